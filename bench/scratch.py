"""A throwaway PostgreSQL database per benchmark run, on the server the tests use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

SERVER_URL = os.environ.get(
    "DOMOS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(name: str) -> str:
    """SERVER_URL pointed at database `name`."""
    return urlunsplit(urlsplit(SERVER_URL)._replace(path="/" + name))


@contextmanager
def scratch_database(label: str) -> Iterator[tuple[str, str]]:
    """(name, url) of a new database, dropped afterwards even if connections are left open."""
    name = f"domos_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    identifier = sql.Identifier(name)
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield name, database_url(name)
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
