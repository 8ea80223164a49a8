"""Fixtures shared by every test area.

PostgreSQL tests use the server at DOMOS_TEST_DATABASE_URL (default: the local cluster). They never
skip: if the server cannot be reached, the test fails with the reason. Every test session creates
its own uniquely named databases, so several test runs can share one server.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import structlog
from psycopg import sql

from runtime.db import async_database, sync_database

pytest_plugins = ["tests.parallel"]

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of a maintenance database on the test server; fails (never skips) when unreachable."""
    url = os.environ.get("DOMOS_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at DOMOS_TEST_DATABASE_URL is not reachable: {exc}", pytrace=False)
    return url


@pytest.fixture(scope="session")
def make_pg_database(pg_server_url: str) -> Iterator[Callable[..., str]]:
    """Factory: `make_pg_database(template=None)` creates a fresh database and returns its URL.

    Databases are dropped at the end of the session (WITH (FORCE), so leftover connections of a
    killed subprocess do not keep them alive).
    """
    created: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"domos_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(statement)
        created.append(name)
        return _with_database(pg_server_url, name)

    yield create
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for name in reversed(created):
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_url(make_pg_database: Callable[..., str]) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return make_pg_database()


# --- DB layer fixtures, parametrized over both backends -------------------------------------

DB_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(scope="session")
def pg_template(make_pg_database: Callable[..., str]) -> str:
    """Name of a session template database that has every logical database's schema."""
    from runtime.logical_databases import LOGICAL_DATABASES

    url = make_pg_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in sorted({logical.pg_schema for logical in LOGICAL_DATABASES.values()}):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    return urlsplit(url).path.lstrip("/")


@pytest.fixture
def pg_domos_url(make_pg_database: Callable[..., str], pg_template: str) -> str:
    """A fresh PostgreSQL database with the (empty) schemas of all logical databases."""
    return make_pg_database(template=pg_template)


def database_environ(backend: str, data_dir: str, pg_url: str | None = None) -> dict[str, str]:
    """The environment of a test program using the DB layer on `backend`."""
    environ = {
        "DB_TYPE": backend,
        "DOMOS_DATA_DIR": data_dir,
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "6",
        "DB_POOL_TIMEOUT_S": "10",
        "SQLITE_BUSY_TIMEOUT_S": "10",
    }
    if pg_url is not None:
        environ["DATABASE_URL"] = pg_url
    return environ


@pytest.fixture(params=DB_BACKENDS)
def database_environ_vars(request: pytest.FixtureRequest, tmp_path: Any) -> dict[str, str]:
    """Environment for DB_TYPE=sqlite (a fresh data dir) and DB_TYPE=postgres (a fresh db)."""
    backend: str = request.param
    pg_url = request.getfixturevalue("pg_domos_url") if backend == "postgres" else None
    return database_environ(backend, str(tmp_path / "data"), pg_url)


@pytest.fixture
def database_settings(database_environ_vars: dict[str, str]) -> Any:
    """`DatabaseSettings` for each backend (see `database_environ_vars`)."""
    from runtime.config import Settings

    return Settings.from_env(database_environ_vars).db


@pytest.fixture
async def async_db(database_settings: Any) -> Any:
    """An opened `AsyncDatabase` on each backend; closed after the test."""

    db = async_database(database_settings)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def sync_db(database_settings: Any) -> Iterator[Any]:
    """An opened synchronous `Database` on each backend; closed after the test."""

    db = sync_database(database_settings)
    db.open()
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo `configure_logging` of the code under test: its handler on the root logger, the
    level, captured warnings and structlog's configuration and context."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
