"""Enqueueing notifications: one outbox row per dedupe key, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from runtime.db import AsyncTransaction


async def enqueue(
    tx: AsyncTransaction,
    *,
    dedupe_key: str,
    chat_id: int,
    user_id: int | None,
    kind: str,
    text: str,
    priority: int = 100,
    parse_mode: str | None = None,
    reply_markup: dict[str, Any] | None = None,
) -> bool:
    """Insert the message unless its dedupe key exists; True when this call inserted it."""
    inserted = await tx.execute(
        "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text, priority, parse_mode,"
        " reply_markup) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        (dedupe_key, chat_id, user_id, kind, text, priority, parse_mode, reply_markup),
    )
    return inserted == 1
