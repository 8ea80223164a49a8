"""docker/postgres-init on a real PostgreSQL: the schemas it creates are the ones `domos db
upgrade` fills, and running it again (beside the migrations) is harmless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from runtime.logical_databases import LOGICAL_DATABASES

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.postgres


def _schemas(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    return {row[0] for row in rows}


def test_init_script_then_db_upgrade(pg_url: str):
    script = "\n".join(
        path.read_text() for path in sorted((REPO / "docker/postgres-init").glob("*.sql"))
    )
    for _ in range(2):
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(script)
    wanted = {db.pg_schema for db in LOGICAL_DATABASES.values()}
    assert wanted <= _schemas(pg_url)

    env = {**os.environ, "DB_TYPE": "postgres", "DATABASE_URL": pg_url}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "domos"), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(pg_url) as conn:
        tables = {
            (schema, name)
            for schema, name in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables"
            ).fetchall()
        }
    assert ("main", "users") in tables
    assert {schema for schema, _ in tables} >= wanted - {"django"}
