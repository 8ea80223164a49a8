"""SQL of the work-claiming helper, per dialect.

A claimable table has `id`, `lease_owner TEXT NULL` and `lease_expires_at TIMESTAMPTZ NULL`. A row
is free when it has no owner, no expiry, or its lease expired; claiming writes (owner, now+lease).
The caller clears both columns in the UPDATE that finishes the item.
"""

from __future__ import annotations

import re

from runtime.errors import QueryError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ORDER_TERM = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)(\s+(ASC|DESC))?(\s+NULLS\s+(FIRST|LAST))?\s*", re.IGNORECASE
)

FREE_LEASE = "(lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ?)"


def validate_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise QueryError(f"not a plain SQL identifier: {name!r}")
    return name


def validate_order_by(order_by: str) -> str:
    """`id`, `priority DESC, id`, `due_at NULLS FIRST`: column names and directions only."""
    terms = order_by.split(",")
    if not order_by.strip() or not all(_ORDER_TERM.fullmatch(term) for term in terms):
        raise QueryError(f"order_by must be columns with optional ASC/DESC: {order_by!r}")
    return ", ".join(" ".join(term.split()) for term in terms)


def postgres_claim_sql(table: str, where: str, order_by: str, limit: int) -> str:
    """One statement: pick free rows skipping locked ones, lease them, return them in order.

    Parameters, in order: where params..., now, owner, expires_at.
    """
    return (
        f"WITH picked AS (SELECT id FROM {table} WHERE ({where}) AND {FREE_LEASE}"
        f" ORDER BY {order_by} LIMIT {limit:d} FOR UPDATE SKIP LOCKED),"
        f" claimed AS (UPDATE {table} AS t SET lease_owner = ?, lease_expires_at = ?"
        f" FROM picked WHERE t.id = picked.id RETURNING t.*)"
        f" SELECT * FROM claimed ORDER BY {order_by}"
    )


def sqlite_pick_sql(table: str, where: str, order_by: str, limit: int) -> str:
    """Parameters: where params..., now. Run inside BEGIN IMMEDIATE."""
    return (
        f"SELECT id FROM {table} WHERE ({where}) AND {FREE_LEASE}"
        f" ORDER BY {order_by} LIMIT {limit:d}"
    )


def sqlite_lease_sql(table: str, count: int) -> str:
    """Parameters: owner, expires_at, ids..."""
    marks = ", ".join("?" * count)
    return (
        f"UPDATE {table} SET lease_owner = ?, lease_expires_at = ? WHERE id IN ({marks})"
        " RETURNING *"
    )
