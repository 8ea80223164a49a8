"""Where a Telegram ChatMember stands in its chat, as memberships.status records it.

One mapping for the bot's chat_member updates (services/bot/handlers/chats.py, entry.py) and
ban_monitor's lookups (monitors/membership_census.py). A restricted user is in the chat only
while Telegram says `is_member`.
"""

from __future__ import annotations

_IN = frozenset({"creator", "administrator", "member"})


def membership_status(status: str, is_member: bool | None = None) -> str:
    """'member', 'left' or 'banned' for Telegram's ChatMember `status` (and `is_member`, which
    only a restricted one carries)."""
    if status in _IN or (status == "restricted" and is_member):
        return "member"
    return "banned" if status == "kicked" else "left"
