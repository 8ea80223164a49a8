"""The community's paid chats (`chats.is_managed`).

What members post there is the community's: its voice notes are kept and its texts may become
useful messages. A group anyone added the bot to is not: its posts would otherwise reach the
staff's list of useful messages. A member who paid is given a way into those they are not in
(the receipt, and /status).
"""

from __future__ import annotations

from typing import Any


async def is_paid_chat(db: Any, telegram_chat_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT is_managed FROM chats WHERE telegram_chat_id = ?", (telegram_chat_id,)
        )
    )


async def paid_chats_not_joined(db: Any, user_id: int) -> list[Any]:
    """(id, telegram_chat_id, title) of each paid chat the member is not in: no membership, or
    one that says left, kicked or requested."""
    return list(
        await db.fetchall(
            "SELECT c.id, c.telegram_chat_id, c.title FROM chats c WHERE c.is_managed"
            " AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.chat_id = c.id"
            " AND m.user_id = ? AND m.status = 'member') ORDER BY c.id",
            (user_id,),
        )
    )


async def paid_chats_recorded_in(db: Any, user_id: int) -> list[Any]:
    """(id, telegram_chat_id, title) of each paid chat the records say the member is in: what
    the bot last heard, which a lost chat_member update leaves stale."""
    return list(
        await db.fetchall(
            "SELECT c.id, c.telegram_chat_id, c.title FROM chats c JOIN memberships m"
            " ON m.chat_id = c.id AND m.user_id = ? AND m.status = 'member'"
            " WHERE c.is_managed ORDER BY c.id",
            (user_id,),
        )
    )
