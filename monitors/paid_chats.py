"""Whether a Telegram chat is one of the community's paid chats (`chats.is_managed`).

What members post there is the community's: its voice notes are kept and its texts may become
useful messages. A group anyone added the bot to is not: its posts would otherwise reach the
staff's list of useful messages.
"""

from __future__ import annotations

from typing import Any


async def is_paid_chat(db: Any, telegram_chat_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT is_managed FROM chats WHERE telegram_chat_id = ?", (telegram_chat_id,)
        )
    )
