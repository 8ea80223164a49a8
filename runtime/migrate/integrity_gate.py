"""No chunk commits before its snapshot passed its integrity check (`check`).

The check reads the whole snapshot on one core. The copy does not wait for it to start: its
chunks read, convert and stream while it runs, and each waits for the verdict just before COMMIT.
The parent writes the verdict to a file beside the snapshot (the workers are other processes); a
failed check rolls every chunk back, so nothing read from a damaged snapshot is ever committed.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import closing
from pathlib import Path

from runtime.errors import MigrationError

#: How often a waiting chunk looks for the verdict.
POLL_S = 0.01
_PASSED = "ok"


class IntegrityFailed(MigrationError):
    """The snapshot failed its integrity check: the chunk was rolled back."""


def verdict_path(snapshot: Path) -> Path:
    return snapshot.with_name(snapshot.name + ".integrity")


def clear(snapshot: Path) -> None:
    """Before a check starts: no earlier verdict may let a chunk commit."""
    verdict_path(snapshot).unlink(missing_ok=True)


def record(snapshot: Path, problems: list[str]) -> None:
    """Written whole (renamed into place): a waiting worker never reads half a verdict."""
    path = verdict_path(snapshot)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(_PASSED if not problems else json.dumps(problems), encoding="utf-8")
    partial.replace(path)


#: Tables that a foreign key names as its parent and that have an index: foreign_key_check
#: finds a parent key through its index, so a damaged one could call a valid row an orphan.
_INDEXED_PARENTS = """
SELECT DISTINCT i.tbl_name FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
JOIN sqlite_master i ON i.type = 'index' AND i.tbl_name = f."table" COLLATE NOCASE
WHERE m.type = 'table' ORDER BY 1
"""


def check(snapshot: Path) -> list[str]:
    """Check the snapshot (read-only) and record the verdict; its problems.

    quick_check reads every page and b-tree of the file (and NOT NULL and CHECK constraints) but
    does not compare indexes with their tables, which is most of integrity_check's cost. The
    migration never reads an index: every row it copies, counts and verifies comes from its table's
    b-tree (sqlite_source.table_rows), and PostgreSQL builds its indexes and unique constraints
    anew. The one index it relies on is a foreign key's parent key, found by foreign_key_check:
    those tables get the full integrity_check.

    Through the ADBC SQLite driver, whose SQLite is newer (and faster at this) than the one of
    the sqlite3 module; pyarrow is imported here, in the checking process only."""
    import adbc_driver_manager
    import adbc_driver_sqlite
    import pyarrow as pa

    uri = f"{snapshot.absolute().as_uri()}?mode=ro"
    problems: list[str] = []
    try:
        with (
            closing(adbc_driver_sqlite.connect(uri)) as database,
            closing(adbc_driver_manager.AdbcConnection(database)) as connection,
        ):

            def rows(sql: str) -> list[str]:
                with closing(adbc_driver_manager.AdbcStatement(connection)) as statement:
                    statement.set_sql_query(sql)
                    handle, _ = statement.execute_query()
                    table = pa.RecordBatchReader.from_stream(handle).read_all()
                    return [str(value) for value in table[0]]

            statements = ["PRAGMA quick_check"] + [
                "PRAGMA integrity_check('" + parent.replace("'", "''") + "')"
                for parent in rows(_INDEXED_PARENTS)
            ]
            for sql in statements:
                found = rows(sql)
                if found != ["ok"]:
                    problems += found
    except Exception as exc:
        # A check that could not run fails (no chunk waits forever), as a finding: SQLite
        # refuses to check a file whose pages it cannot read, and the driver's error does not
        # cross back from the checking process (it broke the pool instead).
        problems = [f"integrity check could not run: {exc}"]
    except BaseException as exc:
        record(snapshot, [f"integrity check could not run: {exc}"])
        raise
    record(snapshot, problems)
    return problems


def failure(snapshot: Path, problems: list[str]) -> MigrationError:
    return IntegrityFailed(f"{snapshot}: integrity check failed: {'; '.join(problems[:5])}")


def wait_passed(snapshot: Path) -> None:
    """Return once the snapshot passed; raise IntegrityFailed if it failed, or if the process
    that runs the check is gone (this worker's parent changes when it dies)."""
    path = verdict_path(snapshot)
    parent = os.getppid()
    while not path.exists():
        if os.getppid() != parent:
            raise IntegrityFailed(f"{snapshot}: the migration stopped before its check ended")
        time.sleep(POLL_S)
    verdict = path.read_text(encoding="utf-8")
    if verdict != _PASSED:
        raise failure(snapshot, json.loads(verdict))
