"""Columnar content hash: each column's values in key order, in PostgreSQL's binary form.

Verification hashes what each side holds, independently. The source side hashes the Arrow batches
read from the snapshot (the batches the fast copy streams, or the rows of the Python path turned
into Arrow arrays); the target side is computed by SQL in PostgreSQL (`postgres_hash_columns`).
Per column and chunk, two SHA-256s:
- values: the non-null values in key order as PostgreSQL's send functions write them (int8send
  of every integer type, float8send, boolsend, timestamp(tz)_send, date_send); texts as their
  UTF-8 bytes, one NUL byte between two, where numeric, json and jsonb are hashed as the text
  PostgreSQL prints (`TEXT_SQL`). No text holds a NUL (PostgreSQL refuses it, and the copy
  sends none), so no text can imitate the separator;
- nulls: the keys (int8send) of the rows where the column is NULL. With the row count, they
  give how many texts the values hold, so one empty text differs from none.
The chunk's content hash is the SHA-256 of these, in column order; each column's own (the SHA-256
of its three) names the columns that differ when it does not match. Floats are compared by their
bits, so no float printing rule can differ between the sides. Per-column counts, minima, maxima
and sums (the other hashes' aggregates, verify.py) would add nothing: equal hashes are equal
values, and a column's hash already says which column differs. The source side is
`arrow_digest.py`; this module holds what both sides share and stays free of pyarrow, which only
the workers load.
"""

from __future__ import annotations

import hashlib

from runtime.migrate.arrow_scope import arrow_converts
from runtime.migrate.digest import Digest
from runtime.migrate.plan import ColumnPlan, TablePlan, quote_ident

#: Target base type -> how its values are hashed.
KINDS: dict[str, str] = {
    "bigint": "int",
    "integer": "int",
    "smallint": "int",
    "double precision": "float",
    "text": "text",
    "character varying": "text",
    "boolean": "bool",
    "timestamp with time zone": "timestamp",
    "timestamp without time zone": "timestamp",
    "date": "date",
    "numeric": "numeric",
    "json": "json",
    "jsonb": "jsonb",
}
#: Kinds hashed as texts (NUL-separated): the SQL giving the text PostgreSQL holds, and
#: which the source side computes from its values (arrow_digest.py).
TEXT_SQL: dict[str, str] = {
    "text": "{c}",
    "numeric": "trim_scale({c})::text",  # the value; zero is 0 (numeric has no -0)
    "json": "{c}::text",  # the stored text, verbatim
    "jsonb": "{c}::text",  # jsonb's own printing (rowtext.jsonb_text on the source side)
}
#: Kinds hashed by their binary send function (no text): the function's name.
SEND_SQL: dict[str, str] = {
    "bool": "boolsend",
    "date": "date_send",  # int4 days since 2000-01-01
}
_EMPTY = hashlib.sha256(b"").hexdigest()


def supports(plan: TablePlan) -> bool:
    """Keyed by its integer rowid alias (the order both sides share), of columnar types only."""
    return plan.rowid_key and bool(plan.columns) and all(c.converter in KINDS for c in plan.columns)


def arrow_rule(column: ColumnPlan) -> bool:
    """The fast copy converts this column by an Arrow rule (arrow_scope.py)."""
    return arrow_converts(column.pg_type, column.classes)


def digested_by_copy(plan: TablePlan) -> bool:
    """No Python rule applies and no row is left out: what the copy reads, as converted by the
    Arrow rules, is what it sends, so its own scan gives the source side."""
    return (
        supports(plan)
        and not plan.excluded_rowids
        and all(c.passthrough or arrow_rule(c) for c in plan.columns)
    )


def combine(parts: list[str]) -> str:
    """The chunk's content hash from its column hashes (both sides use this)."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def chunk_digest(plan: TablePlan, rows: int, parts: list[str]) -> Digest:
    """One chunk's digest from its hashes in `postgres_hash_columns` order (both sides)."""
    columns: dict[str, list[str]] = {}
    position = 0
    for column in plan.columns:
        columns[column.target] = [combine(parts[position : position + 2])]  # values, nulls
        position += 2
    return Digest(rows=rows, hash_parts=[combine(parts)], column_hashes=columns)


def _string_agg(expression: str, where: str | None = None, separator: str = "") -> str:
    aggregate = f"string_agg({expression}, '{separator}'::bytea)"
    if where is not None:
        aggregate += f" FILTER (WHERE {where})"
    return f"encode(sha256(coalesce({aggregate}, ''::bytea)), 'hex')"


def postgres_hash_columns(plan: TablePlan) -> list[str]:
    """The SQL expressions giving `ColumnarDigest.parts()` over an ordered scan of the target."""
    key = f"int8send({quote_ident(plan.key[0])}::bigint)"
    expressions = []
    for column in plan.columns:
        q = quote_ident(column.target)
        kind = KINDS[column.converter]
        if kind == "int":
            expressions.append(_string_agg(f"int8send({q}::bigint)"))
        elif kind == "float":
            expressions.append(_string_agg(f"float8send({q})"))
        elif kind == "timestamp":
            # int8 microseconds since 2000-01-01, the wall clock's for timestamp
            send = (
                "timestamptz_send"
                if column.converter.endswith("with time zone")
                else ("timestamp_send")
            )
            expressions.append(_string_agg(f"{send}({q})"))
        elif kind in SEND_SQL:
            expressions.append(_string_agg(f"{SEND_SQL[kind]}({q})"))
        else:
            # textsend() gives the text's bytes in the client encoding, which the digest's
            # session sets to UTF8 (verify.py; the server's is checked): SHA-256 of that runs a
            # tenth faster than md5() of the text itself, and twice as fast in Python. The NUL
            # separator costs a fifth less than a second aggregate of the texts' lengths.
            text = TEXT_SQL[kind].format(c=q)
            expressions.append(_string_agg(f"textsend({text})", separator="\\x00"))
        # A NOT NULL column has no null keys: the constant saves a filter per row.
        expressions.append(f"'{_EMPTY}'" if column.not_null else _string_agg(key, f"{q} IS NULL"))
    return expressions
