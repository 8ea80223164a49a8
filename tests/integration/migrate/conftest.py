"""Helpers for migration tests: run the engine into a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime.migrate.engine import migrate
from runtime.migrate.plan import Source
from runtime.migrate.run import Options

#: The Chinook sample database (MIT licence, tests/fixtures/sqlite/Chinook_LICENSE.md), kept in the
#: repository so a fresh clone tests it wherever it lives.
CHINOOK = Path(__file__).resolve().parents[2] / "fixtures/sqlite/Chinook_Sqlite.sqlite"


@pytest.fixture
def run_migration(tmp_path: Path) -> Callable[..., tuple[int, dict[str, Any]]]:
    def run(
        target_url: str, sources: dict[Path, str], **overrides: Any
    ) -> tuple[int, dict[str, Any]]:
        options = Options(
            sources=[Source(path.stem, path, schema) for path, schema in sources.items()],
            target_url=target_url,
            work_dir=tmp_path / "work",
            report_path=tmp_path / "report.json",
            progress=False,
            jobs=2,
        )
        for name, value in overrides.items():
            setattr(options, name, value)
        return migrate(options)

    return run
