"""The one error-translating context manager, and the backend factory outside runtime.db.base."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path
from typing import Literal

import psycopg
import pytest

import runtime.db.base
from runtime.config import DatabaseSettings, Secret
from runtime.db import async_database, sync_database
from runtime.db.errors import POSTGRES_ERRORS, SQLITE_ERRORS
from runtime.errors import DatabaseUnavailable, UniqueViolation


def test_sqlite_errors_translates_and_keeps_the_cause() -> None:
    driver_error = sqlite3.IntegrityError("UNIQUE constraint failed: t.k")
    driver_error.sqlite_errorname = "SQLITE_CONSTRAINT_UNIQUE"
    with pytest.raises(UniqueViolation) as caught, SQLITE_ERRORS:
        raise driver_error
    assert caught.value.__cause__ is driver_error


def test_postgres_errors_translates_driver_errors_only() -> None:
    with pytest.raises(DatabaseUnavailable), POSTGRES_ERRORS:
        raise psycopg.OperationalError("connection refused")
    with pytest.raises(KeyError), POSTGRES_ERRORS:
        raise KeyError("not a driver error")
    with SQLITE_ERRORS:
        value = 42
    assert value == 42


def test_base_imports_no_backend() -> None:
    tree = ast.parse(Path(runtime.db.base.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {
        name for name in imported if name.startswith(("runtime.db.sqlite", "runtime.db.postgres"))
    }


@pytest.mark.parametrize("db_type", ["sqlite", "postgres"])
def test_the_factory_picks_the_backend_of_db_type(
    db_type: Literal["sqlite", "postgres"], tmp_path: Path
) -> None:
    settings = DatabaseSettings(
        type=db_type,
        data_dir=tmp_path,
        sqlite_paths={"main": tmp_path / "main.db"},
        postgres_url=Secret("postgresql://nobody@127.0.0.1:1/x"),
    )
    async_db = async_database(settings, name="t")
    sync_db = sync_database(settings, name="t")
    assert (async_db.dialect, sync_db.dialect, async_db.name) == (db_type, db_type, "t")
