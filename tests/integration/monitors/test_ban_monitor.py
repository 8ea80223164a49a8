from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitors.ban_monitor import BanMonitor
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import metric, utcnow


async def member_in_chat(db: Any, sandbox: Any, chat: dict[str, Any], **sub: Any) -> dict[str, Any]:
    user = await f.member(db, sandbox, role=sub.pop("role", "member"))
    await f.join(db, sandbox, user, chat)
    user["subscription"] = await f.subscription(db, user, await f.tariff(db), **sub)
    return user


async def actions(db: Any, user: dict[str, Any]) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT * FROM moderation_actions WHERE user_id = ? ORDER BY id", (user["id"],)
    )
    return [dict(row) for row in rows]


async def test_removes_members_past_grace_from_every_managed_chat_once(db, sandbox, monitors):
    chats = [await f.managed_chat(db, sandbox), await f.managed_chat(db, sandbox)]
    past = timedelta(days=-5)
    expired = await member_in_chat(db, sandbox, chats[0], status="expired", ends_in=past)
    await f.join(db, sandbox, expired, chats[1])
    grace_over = await member_in_chat(
        db,
        sandbox,
        chats[0],
        status="grace",
        ends_in=past,
        grace_until=utcnow() - timedelta(hours=1),
    )
    in_grace = await member_in_chat(
        db,
        sandbox,
        chats[0],
        status="grace",
        ends_in=past,
        grace_until=utcnow() + timedelta(days=1),
    )
    active = await member_in_chat(db, sandbox, chats[0])
    staff = await member_in_chat(
        db, sandbox, chats[0], status="expired", ends_in=past, role="staff"
    )
    before = metric("domos_moderation_actions_total", action="ban", outcome="done")
    monitor = await monitors(BanMonitor)

    assert await monitor.tick() == 3
    assert await monitor.tick() == 0

    for chat in chats:
        assert await f.chat_status(sandbox, chat, expired) == "kicked"
    assert await f.chat_status(sandbox, chats[0], grace_over) == "kicked"
    for kept in (in_grace, active, staff):
        assert await f.chat_status(sandbox, chats[0], kept) == "member"
        assert await actions(db, kept) == []
    done = await actions(db, expired)
    assert [(a["action"], a["status"]) for a in done] == [("ban", "done"), ("ban", "done")]
    assert all(a["done_at"] and a["telegram_result"] == {"ok": True, "result": True} for a in done)
    memberships = await db.fetchall(
        "SELECT status FROM memberships WHERE user_id = ?", (expired["id"],)
    )
    assert {m["status"] for m in memberships} == {"banned"}
    assert metric("domos_moderation_actions_total", action="ban", outcome="done") - before == 3


async def test_lifts_the_ban_when_the_member_pays_again_so_the_invite_works(db, sandbox, monitors):
    chat = await f.managed_chat(db, sandbox)
    user = await member_in_chat(db, sandbox, chat, status="expired", ends_in=timedelta(days=-5))
    monitor = await monitors(BanMonitor)
    await monitor.tick()
    assert await f.chat_status(sandbox, chat, user) == "kicked"

    # A new purchase: a new live subscription.
    await f.subscription(db, user, await f.tariff(db), ends_in=timedelta(days=30))
    before = metric("domos_moderation_actions_total", action="unban", outcome="done")
    assert await monitor.tick() == 1
    assert await monitor.tick() == 0

    assert await f.chat_status(sandbox, chat, user) == "left"
    assert [(a["action"], a["status"]) for a in await actions(db, user)] == [
        ("ban", "done"),
        ("unban", "done"),
    ]
    link = await sandbox.http.post(
        f"{sandbox.base}/bot{monitor.ctx.settings.telegram.require_token()}/createChatInviteLink",
        json={"chat_id": chat["telegram_chat_id"], "member_limit": 1},
    )
    invite = (await link.json())["result"]["invite_link"]
    await sandbox.control(
        "POST",
        "/telegram/invite_links/join",
        {"user_id": user["telegram_id"], "invite_link": invite},
    )
    assert await f.chat_status(sandbox, chat, user) == "member"
    assert metric("domos_moderation_actions_total", action="unban", outcome="done") - before == 1


async def test_unban_never_removes_a_member_who_already_rejoined(db, sandbox, monitors):
    chat = await f.managed_chat(db, sandbox)
    user = await f.member(db, sandbox)
    await f.subscription(db, user, await f.tariff(db))
    await db.execute(
        "INSERT INTO memberships (user_id, chat_id, status, banned_at) VALUES (?, ?, 'banned', ?)",
        (user["id"], chat["id"], utcnow()),
    )
    await sandbox.control(
        "POST",
        f"/telegram/chats/{chat['telegram_chat_id']}/members",
        {"user_id": user["telegram_id"], "status": "member"},
    )
    monitor = await monitors(BanMonitor)
    await monitor.tick()
    assert await f.chat_status(sandbox, chat, user) == "member"
    [action] = await actions(db, user)
    assert (action["action"], action["status"]) == ("unban", "done")


async def test_a_ban_decided_before_a_payment_is_not_carried_out(db, sandbox, monitors):
    chat = await f.managed_chat(db, sandbox)
    user = await member_in_chat(db, sandbox, chat, status="expired", ends_in=timedelta(days=-5))
    monitor = await monitors(BanMonitor)
    await monitor.plan()
    await f.subscription(db, user, await f.tariff(db), ends_in=timedelta(days=30))
    await monitor.tick()
    [action] = await actions(db, user)
    assert action["status"] == "failed"
    assert action["last_error"].startswith("superseded")
    assert await f.chat_status(sandbox, chat, user) == "member"


async def test_bot_api_failures_back_off_and_refusals_fail(db, sandbox, monitors):
    chat = await f.managed_chat(db, sandbox)
    user = await member_in_chat(db, sandbox, chat, status="expired", ends_in=timedelta(days=-5))
    admin = await member_in_chat(db, sandbox, chat, status="expired", ends_in=timedelta(days=-5))
    await sandbox.control(
        "POST",
        f"/telegram/chats/{chat['telegram_chat_id']}/members",
        {"user_id": admin["telegram_id"], "status": "administrator"},
    )
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 1})
    monitor = await monitors(BanMonitor)
    await monitor.tick()

    [retried] = await actions(db, user)
    [refused] = await actions(db, admin)
    assert (retried["status"], retried["attempts"]) == ("pending", 1)
    assert retried["next_attempt_at"] > utcnow() + timedelta(seconds=20)
    assert refused["status"] == "failed"
    assert "administrator" in refused["last_error"]

    await db.execute("UPDATE moderation_actions SET next_attempt_at = ?", (utcnow(),))
    await monitor.tick()
    [retried] = await actions(db, user)
    assert (retried["status"], retried["attempts"]) == ("done", 2)
    assert await f.chat_status(sandbox, chat, user) == "kicked"


async def test_a_lapsed_member_in_a_paid_chat_nobody_recorded_is_found_and_removed(
    db, sandbox, monitors
):
    """In the chat at Telegram with no memberships row: added by an admin before they first
    wrote to the bot, or the bot missed the update."""
    chat = await f.managed_chat(db, sandbox)
    past = timedelta(days=-5)

    async def lapsed(*, in_chat: bool, **sub: Any) -> dict[str, Any]:
        user = await f.member(db, sandbox)
        if in_chat:
            await sandbox.control(
                "POST",
                f"/telegram/chats/{chat['telegram_chat_id']}/members",
                {"user_id": user["telegram_id"], "status": "member"},
            )
        await f.subscription(db, user, await f.tariff(db), **sub)
        return user

    unrecorded = await lapsed(in_chat=True, status="expired", ends_in=past)
    never_joined = await lapsed(in_chat=False, status="expired", ends_in=past)
    paying = await lapsed(in_chat=True)  # live: not asked about, not removed
    before = metric("domos_memberships_asked_total", outcome="recorded")
    monitor = await monitors(BanMonitor)

    assert await monitor.tick() == 1
    assert await f.chat_status(sandbox, chat, unrecorded) == "kicked"
    assert await f.chat_status(sandbox, chat, never_joined) == "left"
    assert await f.chat_status(sandbox, chat, paying) == "member"
    rows = await db.fetchall("SELECT * FROM memberships WHERE chat_id = ?", (chat["id"],))
    assert {row["user_id"]: row["status"] for row in rows} == {
        unrecorded["id"]: "banned",
        never_joined["id"]: "left",
    }
    assert metric("domos_memberships_asked_total", outcome="recorded") - before == 2

    assert await monitor.tick() == 0  # asked once: a recorded row is not asked about again
    assert metric("domos_memberships_asked_total", outcome="recorded") - before == 2


async def test_a_ban_the_bot_had_no_rights_for_is_made_once_it_has_them_again(
    db, sandbox, monitors
):
    """The bot demoted in a paid chat: the ban is refused. It stays due, later and not every
    tick, and is carried out once an admin gives the bot its rights back."""
    chat = await f.managed_chat(db, sandbox)
    user = await member_in_chat(db, sandbox, chat, status="expired", ends_in=timedelta(days=-5))
    bot_member = f"/telegram/chats/{chat['telegram_chat_id']}/members"
    [me] = await sandbox.control("GET", "/telegram/bots")
    await sandbox.control("POST", bot_member, {"user_id": me["id"], "status": "member"})
    failed = metric("domos_moderation_actions_total", action="ban", outcome="failed")
    monitor = await monitors(BanMonitor)

    await monitor.tick()
    [refused] = await actions(db, user)
    assert (refused["status"], refused["attempts"]) == ("pending", 1)
    assert "not enough rights" in refused["last_error"]
    assert refused["next_attempt_at"] > utcnow() + timedelta(minutes=5)  # not every tick
    assert metric("domos_moderation_actions_total", action="ban", outcome="failed") - failed == 1

    await sandbox.control("POST", bot_member, {"user_id": me["id"], "status": "administrator"})
    await monitor.tick()
    assert await f.chat_status(sandbox, chat, user) == "member"  # waits for its time
    await db.execute("UPDATE moderation_actions SET next_attempt_at = ?", (utcnow(),))
    await monitor.tick()
    [done] = await actions(db, user)
    assert (done["status"], done["attempts"]) == ("done", 2)
    assert await f.chat_status(sandbox, chat, user) == "kicked"


async def test_a_paid_group_still_configured_by_its_old_id_is_followed_to_the_new_one(
    db, sandbox, monitors
):
    """PAID_CHAT_IDS still names a group upgraded to a supergroup (the bot marks it paid at
    start): Telegram answers for the old id with migrate_to_chat_id, and the paid chat is the
    new one, where the lapsed member is removed; nothing is counted as failed."""
    old_id = -4_100_000_001
    await sandbox.control("POST", "/telegram/chats", {"id": old_id, "type": "group"})
    user = await f.member(db, sandbox)
    await sandbox.control(
        "POST",
        f"/telegram/chats/{old_id}/members",
        {"user_id": user["telegram_id"], "status": "member"},
    )
    new = await sandbox.control(
        "POST", f"/telegram/chats/{old_id}/migrate", {"by": user["telegram_id"]}
    )
    await db.execute(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'group', ?)",
        (old_id, True),
    )
    await f.subscription(db, user, await f.tariff(db), status="expired", ends_in=timedelta(days=-5))
    failed = metric("domos_memberships_asked_total", outcome="failed")
    monitor = await monitors(BanMonitor)

    await monitor.tick()
    await monitor.tick()
    chats = await db.fetchall("SELECT telegram_chat_id, is_managed FROM chats ORDER BY id")
    assert [(c["telegram_chat_id"], c["is_managed"]) for c in chats] == [(new["id"], True)]
    assert await f.chat_status(sandbox, {"telegram_chat_id": new["id"]}, user) == "kicked"
    assert metric("domos_memberships_asked_total", outcome="failed") == failed
