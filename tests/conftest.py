"""Fixtures shared by every test area.

PostgreSQL tests use the server at DOMOS_TEST_DATABASE_URL (default: the local cluster). They never
skip: if the server cannot be reached, the test fails with the reason. Every test session creates
its own uniquely named databases, so several test runs can share one server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

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
