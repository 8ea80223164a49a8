"""Table definitions shared by the DB layer's integration tests (portable, dialect tokens)."""

from __future__ import annotations

from typing import Any

from runtime.db.dialect import render

ITEMS = """
CREATE TABLE items (
    id {{id}},
    k {{text}} NOT NULL UNIQUE,
    n INTEGER NOT NULL DEFAULT 0,
    flag {{bool}} NOT NULL DEFAULT FALSE,
    payload {{json}},
    blob {{bytes}},
    at {{timestamptz}},
    created_at {{timestamptz}} NOT NULL DEFAULT {{now}},
    CHECK (n >= 0)
);
CREATE TABLE children (
    id {{id}},
    item_id BIGINT NOT NULL REFERENCES items(id),
    note {{text}}
);
"""

OUTBOX = """
CREATE TABLE outbox (
    id {{id}},
    status {{text}} NOT NULL DEFAULT 'queued',
    lease_owner {{text}},
    lease_expires_at {{timestamptz}}
);
"""


async def create(db: Any, ddl: str, *, logical_db: str = "main") -> None:
    await db.executescript(render(ddl, db.dialect), db=logical_db)


def create_sync(db: Any, ddl: str, *, logical_db: str = "main") -> None:
    db.executescript(render(ddl, db.dialect), db=logical_db)
