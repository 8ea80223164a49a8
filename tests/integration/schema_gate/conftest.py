"""Each test's database on both backends, and one behind main's newest migration."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import database_environ
from tests.integration.schema_gate.programs import NEWEST, db, upgrade_to, without_newest


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def environ(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    backend: str = request.param
    pg_url = request.getfixturevalue("make_pg_database")() if backend == "postgres" else None
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_", "POSTGRES_", "LOG_", "DOMOS_", "METRICS_"))
    }
    return {
        **inherited,
        **database_environ(backend, str(tmp_path / "data"), pg_url),
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }


@pytest.fixture
def behind(environ: dict[str, str], tmp_path: Path) -> dict[str, str]:
    upgrade_to(environ, tmp_path, edit=without_newest)
    status = db(environ, "status")
    assert status.returncode == 1
    assert re.search(rf"{NEWEST.version:04d}\s+{NEWEST.name}\s+pending", status.stdout)
    return environ
