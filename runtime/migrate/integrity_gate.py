"""No chunk commits before its snapshot passed integrity_check.

integrity_check reads the whole snapshot on one core (about 2 s for the benchmark's file). The
copy does not wait for it to start: its chunks read, convert and stream while it runs, and each
waits for the verdict just before COMMIT. The parent writes the verdict to a file beside the
snapshot (the workers are other processes); a failed check rolls every chunk back, so nothing
read from a damaged snapshot is ever committed.
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
    """The snapshot failed integrity_check: the chunk was rolled back."""


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


def check(snapshot: Path) -> list[str]:
    """Run integrity_check on the snapshot (read-only) and record the verdict; its problems.

    Through the ADBC SQLite driver, whose SQLite is newer (and faster at this) than the one of
    the sqlite3 module; pyarrow is imported here, in the checking process only."""
    import adbc_driver_manager
    import adbc_driver_sqlite
    import pyarrow as pa

    uri = f"{snapshot.absolute().as_uri()}?mode=ro"
    try:
        with (
            closing(adbc_driver_sqlite.connect(uri)) as database,
            closing(adbc_driver_manager.AdbcConnection(database)) as connection,
            closing(adbc_driver_manager.AdbcStatement(connection)) as statement,
        ):
            statement.set_sql_query("PRAGMA integrity_check")
            handle, _ = statement.execute_query()
            rows = [str(row) for row in pa.RecordBatchReader.from_stream(handle).read_all()[0]]
    except BaseException as exc:  # a check that could not run fails: no chunk waits forever
        record(snapshot, [f"integrity_check could not run: {exc}"])
        raise
    problems = [] if rows == ["ok"] else rows
    record(snapshot, problems)
    return problems


def failure(snapshot: Path, problems: list[str]) -> MigrationError:
    return IntegrityFailed(f"{snapshot}: integrity_check failed: {'; '.join(problems[:5])}")


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
