"""Who may stay in a paid chat they have just entered (services/bot/entry.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiogram.types import ChatMemberUpdated

from services.bot import entry

BOT, ENTRANT, MEMBER, ADMIN = 100, 1, 2, 3


def _update(
    old: str, new: str, actor: int = ENTRANT, link_by: int | None = None, **member: Any
) -> ChatMemberUpdated:
    """The fields entry.py reads, named as aiogram names them."""
    link = None if link_by is None else SimpleNamespace(creator=SimpleNamespace(id=link_by))
    update = SimpleNamespace(
        from_user=SimpleNamespace(id=actor),
        old_chat_member=SimpleNamespace(status=old, user=SimpleNamespace(id=ENTRANT)),
        new_chat_member=SimpleNamespace(status=new, user=SimpleNamespace(id=ENTRANT), **member),
        invite_link=link,
    )
    return cast(ChatMemberUpdated, update)


@pytest.mark.parametrize(
    ("old", "new", "member", "expected"),
    [
        ("left", "member", {}, True),
        ("kicked", "member", {}, True),
        ("left", "restricted", {"is_member": True}, True),
        ("left", "restricted", {"is_member": False}, False),
        ("member", "administrator", {}, False),  # a promotion
        ("administrator", "member", {}, False),  # a demotion
        ("member", "left", {}, False),
    ],
)
def test_an_entry_is_a_way_in_not_a_change_of_rank(
    old: str, new: str, member: dict[str, Any], expected: bool
) -> None:
    assert entry.entered(_update(old, new, **member)) is expected


@pytest.mark.parametrize(
    ("actor", "link_by", "expected"),
    [
        (BOT, None, True),  # the bot approved the join request
        (ADMIN, None, True),  # an admin added them, or approved their request
        (MEMBER, None, False),  # a member added them
        (ENTRANT, ADMIN, True),  # followed a link an admin made
        (ENTRANT, BOT, False),  # followed a link the bot made for a payer
        (ENTRANT, None, False),  # joined a public chat by its name
    ],
)
def test_who_let_the_entrant_in(actor: int, link_by: int | None, expected: bool) -> None:
    asked: list[int] = []

    async def is_admin(user_id: int) -> bool:
        asked.append(user_id)
        return user_id == ADMIN

    update = _update("left", "member", actor=actor, link_by=link_by)
    assert asyncio.run(entry.let_in_by_an_admin(update, BOT, is_admin)) is expected
    # Telegram is asked only about someone else who acted.
    assert asked == ([actor] if actor not in (BOT, ENTRANT) else [])
