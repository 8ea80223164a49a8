"""Bans, members, join requests and invite links with Telegram's semantics."""

from __future__ import annotations

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramMigrateToChat
from aiogram.types import (
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberRestricted,
)

from tests.integration.sandbox.conftest import START, Sandbox

CHAT = -1001234


@pytest.fixture
async def paid_chat(sandbox: Sandbox) -> int:
    await sandbox.control(
        "POST", "/telegram/chats", {"id": CHAT, "type": "supergroup", "title": "Paid club"}
    )
    for user_id, status in ((1, "creator"), (2, "member"), (3, "restricted"), (4, "kicked")):
        await sandbox.control(
            "POST", f"/telegram/chats/{CHAT}/members", {"user_id": user_id, "status": status}
        )
    await sandbox.control("POST", "/telegram/users", {"user_id": 5})
    return CHAT


async def join(sandbox: Sandbox, user_id: int, link: str) -> tuple[int, dict]:
    return await sandbox.control_error(
        "POST", "/telegram/invite_links/join", {"user_id": user_id, "invite_link": link}
    )


async def test_get_chat_member_statuses_are_typed(paid_chat: int, bot: Bot) -> None:
    expected = {
        1: ChatMemberOwner,
        2: ChatMemberMember,
        3: ChatMemberRestricted,
        4: ChatMemberBanned,
        5: ChatMemberLeft,
        123456789: ChatMemberAdministrator,
    }
    for user_id, kind in expected.items():
        member = await bot.get_chat_member(paid_chat, user_id)
        assert isinstance(member, kind), (user_id, member)
    with pytest.raises(TelegramBadRequest, match="Bad Request: user not found"):
        await bot.get_chat_member(paid_chat, 777)
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.get_chat_member(-1009, 2)


async def test_ban_keeps_user_out_until_unbanned(
    sandbox: Sandbox, paid_chat: int, bot: Bot
) -> None:
    link = await bot.create_chat_invite_link(paid_chat, name="renewals")
    assert await bot.ban_chat_member(paid_chat, 2)
    member = await bot.get_chat_member(paid_chat, 2)
    assert isinstance(member, ChatMemberBanned)
    status, body = await join(sandbox, 2, link.invite_link)
    assert (status, body["error"]) == (400, "user is banned in this chat")
    bans = await sandbox.control("GET", f"/telegram/bans?chat_id={paid_chat}")
    assert {"chat_id": paid_chat, "user_id": 2, "until_date": 0} in bans

    # Paid again: lift the ban only if banned; the user must rejoin by link.
    assert await bot.unban_chat_member(paid_chat, 2, only_if_banned=True)
    assert isinstance(await bot.get_chat_member(paid_chat, 2), ChatMemberLeft)
    status, body = await join(sandbox, 2, link.invite_link)
    assert (status, body) == (200, {"joined": True, "chat_id": paid_chat})
    assert isinstance(await bot.get_chat_member(paid_chat, 2), ChatMemberMember)
    actions = [a["action"] for a in await sandbox.control("GET", "/telegram/actions?user_id=2")]
    assert actions == ["banned", "unbanned", "member_joined"]


async def test_unban_removes_a_member_unless_only_if_banned(paid_chat: int, bot: Bot) -> None:
    assert await bot.unban_chat_member(paid_chat, 2, only_if_banned=True)
    assert isinstance(await bot.get_chat_member(paid_chat, 2), ChatMemberMember)
    assert await bot.unban_chat_member(paid_chat, 2)
    assert isinstance(await bot.get_chat_member(paid_chat, 2), ChatMemberLeft)


async def test_ban_until_date_rules(sandbox: Sandbox, paid_chat: int, bot: Bot) -> None:
    now = int(START)
    assert await bot.ban_chat_member(paid_chat, 2, until_date=now + 10)  # < 30 s: forever
    member = await bot.get_chat_member(paid_chat, 2)
    assert isinstance(member, ChatMemberBanned)
    assert member.until_date.timestamp() == 0
    assert await bot.ban_chat_member(paid_chat, 3, until_date=now + 3600)
    banned = await bot.get_chat_member(paid_chat, 3)
    assert isinstance(banned, ChatMemberBanned)
    assert banned.until_date.timestamp() == now + 3600
    sandbox.clock.advance(3601)
    assert isinstance(await bot.get_chat_member(paid_chat, 3), ChatMemberLeft)
    assert isinstance(await bot.get_chat_member(paid_chat, 2), ChatMemberBanned)


async def test_owner_and_private_chats_cannot_be_banned(
    sandbox: Sandbox, paid_chat: int, bot: Bot
) -> None:
    with pytest.raises(TelegramBadRequest, match="can't remove chat owner"):
        await bot.ban_chat_member(paid_chat, 1)
    await sandbox.control("POST", "/telegram/users", {"user_id": 8})
    with pytest.raises(TelegramBadRequest, match="can't be changed in private chats"):
        await bot.ban_chat_member(8, 8)


async def test_join_request_approve_and_decline(sandbox: Sandbox, paid_chat: int, bot: Bot) -> None:
    link = await bot.create_chat_invite_link(paid_chat, creates_join_request=True)
    assert link.creates_join_request is True
    status, body = await join(sandbox, 5, link.invite_link)
    assert status == 200
    assert "join_request" in body
    await sandbox.control("POST", "/telegram/users", {"user_id": 6})
    await sandbox.control("POST", "/telegram/join_requests", {"user_id": 6, "chat_id": paid_chat})
    updates = await bot.get_updates()
    requests = [u.chat_join_request for u in updates if u.chat_join_request]
    assert [(r.from_user.id, r.user_chat_id) for r in requests] == [(5, 5), (6, 6)]
    assert requests[0].invite_link is not None
    assert requests[0].invite_link.invite_link == link.invite_link

    assert await bot.approve_chat_join_request(paid_chat, 5)
    assert isinstance(await bot.get_chat_member(paid_chat, 5), ChatMemberMember)
    assert await bot.decline_chat_join_request(paid_chat, 6)
    assert isinstance(await bot.get_chat_member(paid_chat, 6), ChatMemberLeft)
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.approve_chat_join_request(paid_chat, 6)
    with pytest.raises(TelegramBadRequest, match="USER_ALREADY_PARTICIPANT"):
        await bot.approve_chat_join_request(paid_chat, 5)


async def test_banned_user_cannot_ask_to_join(sandbox: Sandbox, paid_chat: int) -> None:
    status, body = await sandbox.control_error(
        "POST", "/telegram/join_requests", {"user_id": 4, "chat_id": paid_chat}
    )
    assert (status, body["error"]) == (400, "user is banned in this chat")


async def test_invite_link_rules(sandbox: Sandbox, paid_chat: int, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest):
        await bot.create_chat_invite_link(paid_chat, member_limit=1, creates_join_request=True)
    with pytest.raises(TelegramBadRequest):
        await bot.create_chat_invite_link(paid_chat, name="x" * 33)
    with pytest.raises(TelegramBadRequest):
        await bot.create_chat_invite_link(paid_chat, member_limit=100000)

    one_shot = await bot.create_chat_invite_link(paid_chat, member_limit=1)
    assert one_shot.member_limit == 1
    assert one_shot.is_revoked is False
    assert (await join(sandbox, 5, one_shot.invite_link))[0] == 200
    await sandbox.control("POST", "/telegram/users", {"user_id": 6})
    status, body = await join(sandbox, 6, one_shot.invite_link)
    assert (status, body["error"]) == (400, "invite link member limit reached")

    expiring = await bot.create_chat_invite_link(paid_chat, expire_date=int(START) + 60)
    sandbox.clock.advance(61)
    status, body = await join(sandbox, 6, expiring.invite_link)
    assert (status, body["error"]) == (400, "invite link has expired")

    revocable = await bot.create_chat_invite_link(paid_chat)
    revoked = await bot.revoke_chat_invite_link(paid_chat, revocable.invite_link)
    assert revoked.is_revoked is True
    status, body = await join(sandbox, 6, revocable.invite_link)
    assert (status, body["error"]) == (400, "invite link is invalid or revoked")


async def test_someone_in_the_chat_adds_a_user(sandbox: Sandbox, paid_chat: int, bot: Bot) -> None:
    async def add(user_id: int, by: int) -> tuple[int, dict]:
        return await sandbox.control_error(
            "POST", f"/telegram/chats/{paid_chat}/add", {"user_id": user_id, "added_by": by}
        )

    await bot.get_updates(allowed_updates=["chat_member"])  # Telegram sends them if asked
    assert await add(5, by=2) == (200, {"joined": True, "chat_id": paid_chat})
    updates = await bot.get_updates(allowed_updates=["chat_member"])
    [added] = [u.chat_member for u in updates if u.chat_member is not None]
    assert (added.from_user.id, added.new_chat_member.user.id) == (2, 5)
    assert (added.old_chat_member.status, added.new_chat_member.status) == ("left", "member")
    assert added.invite_link is None

    await sandbox.control("POST", "/telegram/users", {"user_id": 6})
    assert (await add(6, by=4))[1]["error"] == "only someone in the chat can add people to it"
    assert (await add(4, by=1))[1]["error"] == "user is banned in this chat"
    assert (await add(5, by=1))[1]["error"] == "user is already a member"


async def test_a_member_leaves_and_the_bot_is_told(
    sandbox: Sandbox, paid_chat: int, bot: Bot
) -> None:
    """Leaving is the user's own chat_member update (as Telegram sends it to a bot that asks
    for them), not a silent change of state."""

    async def leave(user_id: int) -> tuple[int, dict]:
        return await sandbox.control_error(
            "POST", f"/telegram/chats/{paid_chat}/leave", {"user_id": user_id}
        )

    await bot.get_updates(allowed_updates=["chat_member"])
    assert await add_then(sandbox, paid_chat) is None
    assert await leave(5) == (200, {"left": True, "chat_id": paid_chat})
    updates = await bot.get_updates(allowed_updates=["chat_member"])
    [left] = [u.chat_member for u in updates if u.chat_member is not None][-1:]
    assert (left.from_user.id, left.new_chat_member.user.id) == (5, 5)
    assert (left.old_chat_member.status, left.new_chat_member.status) == ("member", "left")
    assert (await leave(5))[1]["error"] == "user is not a member of the chat"
    assert (await leave(4))[1]["error"] == "user is not a member of the chat"  # banned


async def add_then(sandbox: Sandbox, paid_chat: int) -> None:
    await sandbox.control("POST", f"/telegram/chats/{paid_chat}/add", {"user_id": 5, "added_by": 2})


async def test_admin_methods_refuse_a_bot_without_the_right(
    sandbox: Sandbox, paid_chat: int, bot: Bot
) -> None:
    """As Telegram: a bot that is not an administrator (or lacks the right) is refused with 400,
    one that is not in the chat with 403; given the right back, the same calls work."""
    bot_id = bot.id
    await sandbox.control("POST", "/telegram/join_requests", {"user_id": 5, "chat_id": paid_chat})

    async def set_bot(status: str, **rights: bool) -> None:
        await sandbox.control(
            "POST",
            f"/telegram/chats/{paid_chat}/members",
            {"user_id": bot_id, "status": status, "rights": rights},
        )

    await set_bot("member")
    with pytest.raises(TelegramBadRequest, match="not enough rights to restrict/ban chat member"):
        await bot.ban_chat_member(paid_chat, 2)
    with pytest.raises(TelegramBadRequest, match="not enough rights to restrict/ban chat member"):
        await bot.unban_chat_member(paid_chat, 4, only_if_banned=True)
    with pytest.raises(TelegramBadRequest, match="CHAT_ADMIN_REQUIRED"):
        await bot.approve_chat_join_request(paid_chat, 5)
    with pytest.raises(TelegramBadRequest, match="not enough rights to manage chat invite link"):
        await bot.create_chat_invite_link(paid_chat, creates_join_request=True)
    with pytest.raises(TelegramBadRequest, match="not enough rights to export chat invite link"):
        await bot.export_chat_invite_link(paid_chat)

    await set_bot("administrator", can_restrict_members=False)
    with pytest.raises(TelegramBadRequest, match="not enough rights to restrict/ban chat member"):
        await bot.ban_chat_member(paid_chat, 2)
    assert (await bot.get_chat_member(paid_chat, bot_id)).can_restrict_members is False
    assert await bot.approve_chat_join_request(paid_chat, 5) is True  # can_invite_users kept

    await set_bot("kicked")
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.ban_chat_member(paid_chat, 2)
    await set_bot("left")
    with pytest.raises(TelegramForbiddenError, match="bot is not a member of the supergroup chat"):
        await bot.decline_chat_join_request(paid_chat, 5)

    await set_bot("administrator")
    assert await bot.ban_chat_member(paid_chat, 2) is True
    bans = await sandbox.control("GET", f"/telegram/bans?chat_id={paid_chat}")
    assert 2 in {ban["user_id"] for ban in bans}


async def test_a_group_upgraded_to_a_supergroup(sandbox: Sandbox, bot: Bot) -> None:
    """A new chat with the same people; the old id answers 400 with migrate_to_chat_id."""
    await sandbox.control("POST", "/telegram/chats", {"id": -4000001, "type": "group"})
    for user_id, status in ((1, "creator"), (2, "member")):
        await sandbox.control(
            "POST", "/telegram/chats/-4000001/members", {"user_id": user_id, "status": status}
        )
    new = await sandbox.control("POST", "/telegram/chats/-4000001/migrate", {"by": 1})
    assert (new["id"], new["type"]) == (-1004000001, "supergroup")
    assert isinstance(await bot.get_chat_member(-1004000001, 2), ChatMemberMember)
    with pytest.raises(TelegramMigrateToChat) as refused:
        await bot.get_chat_member(-4000001, 2)
    assert refused.value.migrate_to_chat_id == -1004000001
    updates = await bot.get_updates()
    service = [u.message for u in updates if u.message is not None]
    assert [(m.chat.id, m.migrate_to_chat_id, m.migrate_from_chat_id) for m in service] == [
        (-4000001, -1004000001, None),
        (-1004000001, None, -4000001),
    ]


@pytest.mark.parametrize("method", ["banChatMember", "unbanChatMember", "approveChatJoinRequest"])
async def test_moderation_aimed_at_an_upgraded_group_names_the_supergroup(
    sandbox: Sandbox, method: str
) -> None:
    """ban_monitor's calls on the old id are refused, nothing done, with the new id to use."""
    await sandbox.control("POST", "/telegram/chats", {"id": -4000001, "type": "group"})
    for user_id, status in ((1, "creator"), (2, "member")):
        await sandbox.control(
            "POST", "/telegram/chats/-4000001/members", {"user_id": user_id, "status": status}
        )
    await sandbox.control("POST", "/telegram/chats/-4000001/migrate", {"by": 1})

    status, body = await sandbox.raw("POST", method, json={"chat_id": -4000001, "user_id": 2})

    assert (status, body) == (
        400,
        {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1004000001},
        },
    )
    members = await sandbox.control("GET", "/telegram/chats/-1004000001/members")
    assert {m["user_id"]: m["status"] for m in members}[2] == "member"
