"""Numbers read back from callback_data, which the member's client sends and may have altered.

A button carries row ids and indexes as decimal digits. `str.isdigit` also accepts digits
`int` refuses ('²') and `int` accepts what no database column holds (20 digits overflow
BIGINT and SQLite's INTEGER alike), so both once ended an update in an error. Whatever this
parser refuses is answered as a stale button is.
"""

from __future__ import annotations

#: The largest value of a BIGINT column (PostgreSQL) and of a SQLite INTEGER.
MAX_ID = 2**63 - 1


def parse_id(raw: str) -> int | None:
    """The number `raw` spells in ASCII digits, if a database column can hold it; else None."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > len(str(MAX_ID)):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None
