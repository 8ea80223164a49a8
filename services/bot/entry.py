"""Who may stay in a paid chat they have just entered.

Payers come in by a join request the bot approves (the receipt's link makes one). Anyone else
without a subscription is a stranger, unless an admin of the chat let them in: an admin added
them or approved their request, or they followed a link an admin made (only admins make links:
handing one out is their decision). A stranger came in by a link the bot made for a payer (a
link limited to one member, from before links asked to join or from the legacy bot, admits
whoever follows it first), was added by a member (Telegram lets members add people unless the
chat's permissions forbid it), or joined a public chat by its name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiogram.types import ChatMemberUpdated

from monitors.decisions.membership import membership_status


def _is_in(member: object) -> bool:
    status = str(getattr(member, "status", ""))
    return membership_status(status, getattr(member, "is_member", None)) == "member"


def entered(update: ChatMemberUpdated) -> bool:
    """Out of the chat before, an ordinary participant now (a promotion is not an entry)."""
    new = update.new_chat_member
    return (
        not _is_in(update.old_chat_member)
        and _is_in(new)
        and new.status in ("member", "restricted")
    )


async def let_in_by_an_admin(
    update: ChatMemberUpdated, bot_id: int, is_admin: Callable[[int], Awaitable[bool]]
) -> bool:
    """Whether an admin of the chat (the bot included) let the entrant in. `is_admin` asks
    Telegram about one user of the chat."""
    actor = update.from_user.id
    entrant = update.new_chat_member.user.id
    if actor == bot_id:
        return True  # the bot approved a join request: a payer's
    if actor != entrant:
        return await is_admin(actor)  # added, or a request approved, by someone else
    link = update.invite_link
    return link is not None and link.creator.id != bot_id
