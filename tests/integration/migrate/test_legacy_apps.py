"""Ten public applications' SQLite schemas, migrated in infer mode (issue 17).

For each (tests/fixtures/README.md): every row arrives, verification passes (in the run and on its
own), the columns get their natural types, and the application's own SELECTs, run through our DB
layer on both backends, return the same rows. Its SELECTs that PostgreSQL cannot run unchanged
are listed with the reason, and shown to fail there.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from runtime.config import DatabaseSettings, Secret
from runtime.db import Database, sync_database
from runtime.errors import QueryError
from runtime.logical_databases import LOGICAL_DATABASES
from runtime.migrate.engine import verify_only
from runtime.migrate.plan import Source
from runtime.migrate.run import Options
from runtime.migrate.values import to_date, to_timestamptz
from tests.fixtures.legacy_apps import APPS, LegacyApp

pytestmark = pytest.mark.postgres


def _same(lite: Any, pg: Any) -> bool:
    """One value read through the DB layer from SQLite and from PostgreSQL: equal once the
    SQLite value is read by the rule that made the PostgreSQL type (docs/cutover.md)."""
    if lite is None or pg is None:
        return lite is pg
    if isinstance(pg, bool):
        return lite in (True, False, 0, 1) and bool(lite) == pg
    if isinstance(pg, datetime):  # sqlite3's "timestamp" converter reads TIMESTAMP columns
        if isinstance(lite, datetime):
            return (lite if lite.tzinfo else lite.replace(tzinfo=UTC)) == pg
        return to_timestamptz(lite) == pg
    if isinstance(pg, date):  # sqlite3's own "date" converter reads a DATE column already
        return (lite if isinstance(lite, date) else to_date(lite)) == pg
    if isinstance(pg, Decimal):
        return Decimal(repr(lite) if isinstance(lite, float) else str(lite)) == pg
    if isinstance(pg, dict | list):
        return (json.loads(lite) if isinstance(lite, str) else lite) == pg
    if isinstance(pg, str) and not isinstance(lite, str):
        return str(lite) == pg
    return bool(lite == pg and type(lite) is type(pg))


def _same_rows(lite: list[dict[str, Any]], pg: list[dict[str, Any]], ordered: bool) -> bool:
    if len(lite) != len(pg):
        return False
    if not ordered:
        lite = sorted(lite, key=lambda row: repr(sorted(map(str, row.values()))))
        pg = sorted(pg, key=lambda row: repr(sorted(map(str, row.values()))))
    for left, right in zip(lite, pg, strict=True):
        # Names may differ where SQLite labels an expression by its text (`COUNT(*)`).
        if len(left) != len(right):
            return False
        if not all(_same(a, b) for a, b in zip(left.values(), right.values(), strict=True)):
            return False
    return True


def _databases(sqlite_file: Path, pg_url: str, data_dir: Path) -> tuple[Database, Database]:
    # The SQLite backend opens every logical database: the others are empty files.
    paths = {name: data_dir / f"{name}.sqlite" for name in LOGICAL_DATABASES}
    data_dir.mkdir(parents=True, exist_ok=True)
    lite = DatabaseSettings(
        type="sqlite",
        data_dir=data_dir,
        sqlite_paths={**paths, "main": sqlite_file},
        postgres_url=None,
    )
    pg = DatabaseSettings(
        type="postgres", data_dir=data_dir, sqlite_paths={}, postgres_url=Secret(pg_url)
    )
    return sync_database(lite), sync_database(pg)


@pytest.mark.parametrize("app", APPS, ids=[app.name for app in APPS])
def test_a_legacy_application_migrates_whole_with_natural_types_and_same_answers(
    app: LegacyApp, pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    source = app.build(tmp_path / f"{app.name}.sqlite")

    # Reported schema defects (a foreign key to no table) fail a run without --allow-rejects.
    code, report = run_migration(pg_url, {source: "main"}, allow_rejects=bool(app.problems))

    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert {n: t["problems"] for n, t in tables.items() if t["problems"]} == app.problems
    for name, table in tables.items():
        assert table["rejects"] == {}, (name, table["rejects"])
        assert table["rows_written"] == table["rows_source"] > 0, name
        assert table["verified"] is True, (name, table["verification_problems"])
    assert code == 0, [t["problems"] for t in tables.values()]
    for name, expected in app.natural_types.items():
        types = {c["source"]: c["type"] for c in tables[name]["columns"]}
        assert {column: types[column] for column in expected} == expected, name
    again = Options(
        sources=[Source(source.stem, source, "main")],
        target_url=pg_url,
        work_dir=tmp_path / "verify",
        progress=False,
    )
    assert verify_only(again)[0] == 0

    # The application's own SELECTs, `?` placeholders and all, on both backends.
    copy = tmp_path / "app.sqlite"
    shutil.copyfile(source, copy)  # the DB layer turns WAL on: not on the migrated file
    lite, pg = _databases(copy, pg_url, tmp_path / "data")
    with lite, pg:
        for sql, params in app.queries:
            from_sqlite = lite.fetchall(sql, params)
            from_postgres = pg.fetchall(sql, params)
            assert from_sqlite, f"{app.name}: the query finds nothing: {sql}"
            ordered = "order by" in sql.lower()
            assert _same_rows(from_sqlite, from_postgres, ordered), (
                sql,
                from_sqlite[:3],
                from_postgres[:3],
            )
        for sql, params, _why in app.unportable:
            with pytest.raises(QueryError):
                pg.fetchall(sql, params)


def test_the_comparison_of_answers_tells_different_rows_apart() -> None:
    """The check the test above relies on fails where the answers differ."""
    when = datetime.fromisoformat("2024-01-02T03:04:05+00:00")
    assert _same("2024-01-02 03:04:05", when)
    assert not _same("2024-01-02 03:04:06", when)
    assert _same(1, True)
    assert not _same(0, True)
    assert _same(990, Decimal("990.00"))
    assert not _same(990.5, Decimal("990.00"))
    assert _same('{"a": 1}', {"a": 1})
    assert not _same(7, 7.0)
    rows = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
    assert _same_rows(rows, list(reversed(rows)), ordered=False)
    assert not _same_rows(rows, list(reversed(rows)), ordered=True)
    assert not _same_rows(rows, rows[:1], ordered=False)
