"""ban_monitor's Bot API calls aimed at a paid group Telegram has upgraded to a supergroup.

The database still names the group by its old id (the bot missed the two service messages, or
the old id was never followed): banChatMember, unbanChatMember and approveChatJoinRequest on it
answer 400 "group chat was upgraded to a supergroup chat" with migrate_to_chat_id. The paid chat
follows the migration (monitors/chat_migration.py) and the call is made again in the
supergroup, instead of the action being recorded as failed (or the request asked again for good).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitors.ban_monitor import BanMonitor
from monitors.payment_monitor import PaymentMonitor
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import metric, utcnow
from tests.integration.monitors.test_payment_monitor import setup_purchase

OLD_ID = -4_200_000_001
NEW_ID = -1_004_200_000_001


async def upgraded_group(
    db: Any, sandbox: Any, user: dict[str, Any], membership: str
) -> dict[str, Any]:
    """A paid basic group the member is in, recorded by its old id with the member's
    `membership`, then upgraded at Telegram (by the member, its creator)."""
    await sandbox.control("POST", "/telegram/chats", {"id": OLD_ID, "type": "group"})
    await sandbox.control(
        "POST",
        f"/telegram/chats/{OLD_ID}/members",
        {"user_id": user["telegram_id"], "status": "creator"},
    )
    chat_id = await db.fetchval(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'group', ?)"
        " RETURNING id",
        (OLD_ID, True),
    )
    await db.execute(
        "INSERT INTO memberships (user_id, chat_id, status, banned_at) VALUES (?, ?, ?, ?)",
        (user["id"], chat_id, membership, utcnow() if membership == "banned" else None),
    )
    await sandbox.control(
        "POST",
        f"/telegram/chats/{OLD_ID}/migrate",
        {"by": user["telegram_id"], "to_chat_id": NEW_ID},
    )
    # Telegram's creator of the supergroup is an ordinary member in these tests: the bot
    # may act on them.
    await sandbox.control(
        "POST",
        f"/telegram/chats/{NEW_ID}/members",
        {"user_id": user["telegram_id"], "status": "member"},
    )
    return {"id": chat_id, "telegram_chat_id": OLD_ID}


async def chats(db: Any) -> list[tuple[int, bool]]:
    rows = await db.fetchall("SELECT telegram_chat_id, is_managed FROM chats ORDER BY id")
    return [(row["telegram_chat_id"], bool(row["is_managed"])) for row in rows]


async def the_action(db: Any, user: dict[str, Any]) -> dict[str, Any]:
    [row] = await db.fetchall("SELECT * FROM moderation_actions WHERE user_id = ?", (user["id"],))
    return dict(row)


async def membership(db: Any, user: dict[str, Any]) -> list[tuple[int, str]]:
    rows = await db.fetchall(
        "SELECT c.telegram_chat_id, m.status FROM memberships m JOIN chats c ON c.id = m.chat_id"
        " WHERE m.user_id = ? ORDER BY m.id",
        (user["id"],),
    )
    return [(row["telegram_chat_id"], row["status"]) for row in rows]


async def test_a_ban_aimed_at_an_upgraded_group_is_made_in_the_supergroup(db, sandbox, monitors):
    user = await f.member(db, sandbox)
    await upgraded_group(db, sandbox, user, "member")
    await f.subscription(db, user, await f.tariff(db), status="expired", ends_in=timedelta(days=-5))
    failed = metric("domos_moderation_actions_total", action="ban", outcome="failed")
    monitor = await monitors(BanMonitor)

    assert await monitor.tick() == 1

    action = await the_action(db, user)
    assert (action["action"], action["status"], action["attempts"]) == ("ban", "done", 1)
    assert await f.chat_status(sandbox, {"telegram_chat_id": NEW_ID}, user) == "kicked"
    assert await chats(db) == [(NEW_ID, True)]  # the same row, under its new id
    assert await membership(db, user) == [(NEW_ID, "banned")]
    assert metric("domos_moderation_actions_total", action="ban", outcome="failed") == failed
    assert await monitor.tick() == 0


async def test_a_ban_follows_an_upgraded_group_to_the_supergroup_row_already_known(
    db, sandbox, monitors
):
    """The bot recorded the supergroup (a message there) without the migration: the paid chat,
    the member and the ban move to that row; the old one is paid no more."""
    user = await f.member(db, sandbox)
    old = await upgraded_group(db, sandbox, user, "member")
    new_row = await db.fetchval(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', ?)"
        " RETURNING id",
        (NEW_ID, False),
    )
    await f.subscription(db, user, await f.tariff(db), status="expired", ends_in=timedelta(days=-5))
    monitor = await monitors(BanMonitor)

    assert await monitor.tick() == 1

    action = await the_action(db, user)
    assert (action["status"], action["chat_id"]) == ("done", new_row)
    assert await f.chat_status(sandbox, {"telegram_chat_id": NEW_ID}, user) == "kicked"
    assert await chats(db) == [(OLD_ID, False), (NEW_ID, True)]
    assert await membership(db, user) == [(NEW_ID, "banned")]
    assert old["id"] != new_row
    assert await monitor.tick() == 0
    assert len(await db.fetchall("SELECT id FROM moderation_actions")) == 1


async def test_an_unban_aimed_at_an_upgraded_group_is_made_in_the_supergroup(db, sandbox, monitors):
    user = await f.member(db, sandbox)
    await upgraded_group(db, sandbox, user, "banned")
    await sandbox.control(
        "POST",
        f"/telegram/chats/{NEW_ID}/members",
        {"user_id": user["telegram_id"], "status": "kicked"},
    )
    await f.subscription(db, user, await f.tariff(db), ends_in=timedelta(days=30))
    failed = metric("domos_moderation_actions_total", action="unban", outcome="failed")
    monitor = await monitors(BanMonitor)

    assert await monitor.tick() == 1

    action = await the_action(db, user)
    assert (action["action"], action["status"]) == ("unban", "done")
    assert await f.chat_status(sandbox, {"telegram_chat_id": NEW_ID}, user) == "left"
    assert await chats(db) == [(NEW_ID, True)]
    assert await membership(db, user) == [(NEW_ID, "left")]
    assert metric("domos_moderation_actions_total", action="unban", outcome="failed") == failed


async def test_a_join_request_in_an_upgraded_group_is_approved_in_the_supergroup(
    db, sandbox, monitors
):
    """A payer's request the bot failed to approve, recorded under the group's old id: ban_monitor
    approves it in the supergroup and tells the payer, instead of asking the old id forever."""
    user = await f.member(db, sandbox)
    await upgraded_group(db, sandbox, user, "requested")
    await sandbox.control(
        "POST",
        f"/telegram/chats/{NEW_ID}/members",
        {"user_id": user["telegram_id"], "status": "left"},
    )
    await sandbox.control(
        "POST", "/telegram/join_requests", {"user_id": user["telegram_id"], "chat_id": NEW_ID}
    )
    await db.execute("UPDATE memberships SET updated_at = ?", (utcnow() - timedelta(hours=1),))
    await f.subscription(db, user, await f.tariff(db), ends_in=timedelta(days=30))
    monitor = await monitors(BanMonitor)

    assert await monitor.tick() == 1

    assert await f.chat_status(sandbox, {"telegram_chat_id": NEW_ID}, user) == "member"
    assert await chats(db) == [(NEW_ID, True)]
    assert await membership(db, user) == [(NEW_ID, "member")]
    told = await db.fetchall("SELECT kind FROM outbox WHERE user_id = ?", (user["id"],))
    assert [row["kind"] for row in told] == ["join_request"]


async def test_a_payments_own_unban_in_an_upgraded_group_is_made_in_the_supergroup(
    db, sandbox, monitors
):
    """payment_monitor carries out the unban a payment earns at once, with the same executor:
    it was recorded failed on the group's old id, and the payer stayed banned."""
    buy = await setup_purchase(db, sandbox)
    user = buy["user"]
    await upgraded_group(db, sandbox, user, "banned")
    await sandbox.control(
        "POST",
        f"/telegram/chats/{NEW_ID}/members",
        {"user_id": user["telegram_id"], "status": "kicked"},
    )
    await sandbox.control("POST", f"/yookassa/payments/{buy['provider']['id']}/succeed", {})

    await (await monitors(PaymentMonitor)).tick()

    action = await the_action(db, user)
    assert (action["action"], action["status"]) == ("unban", "done")
    assert await f.chat_status(sandbox, {"telegram_chat_id": NEW_ID}, user) == "left"
    assert (NEW_ID, True) in await chats(db)
    # The receipt's link is the supergroup's (on the old id, creating it failed too).
    assert await sandbox.control("GET", f"/telegram/invite_links?chat_id={NEW_ID}") != []
