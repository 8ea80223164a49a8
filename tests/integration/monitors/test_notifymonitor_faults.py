"""notifymonitor when a row or the wire misbehaves: an unsendable text, a lost lease, an answer
that came too late, a broadcast whose member lapsed while it waited."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from monitors.notifymonitor import NotifyMonitor
from monitors.telegram_client import TelegramClient
from tests.integration.monitors import factories
from tests.integration.monitors.conftest import metric, utcnow
from tests.integration.monitors.test_notifymonitor import enqueue, outbox_row

#: An HTML text over 4096 characters with one tag longer than 4096: no part can hold the tag.
UNSPLITTABLE = '<a href="https://x/' + "a" * 5000 + '">link</a> tail'


def eight_parts() -> str:
    """A plain text of exactly eight parts, each naming its number."""
    return "\n\n".join(f"Часть {n}. " + "слово " * 650 for n in range(1, 9))


async def test_a_row_that_cannot_be_split_is_dead_lettered_and_the_tick_goes_on(
    db, sandbox, monitors
):
    bad_chat, good_chat = await sandbox.new_user(), await sandbox.new_user()
    bad = await enqueue(db, bad_chat, UNSPLITTABLE, parse_mode="HTML")
    good = await enqueue(db, good_chat, "Соседнее сообщение")
    dead_before = metric("domos_notify_messages_total", outcome="dead")
    monitor = await monitors(NotifyMonitor)

    assert await monitor.tick() == 2  # the old relay failed the whole tick here

    row = await outbox_row(db, bad)
    assert (row["status"], row["lease_owner"], row["attempts"]) == ("dead", None, 1)
    assert "cannot be sent as stored" in row["last_error"]
    assert "longer than one part" in row["last_error"]
    assert metric("domos_notify_messages_total", outcome="dead") - dead_before == 1
    assert (await outbox_row(db, good))["status"] == "sent"
    assert await sandbox.sent_to(bad_chat) == []
    assert await monitor.tick() == 0


async def test_a_sender_whose_row_was_taken_over_stops(db, sandbox, monitors):
    user = await sandbox.new_user()
    row_id = await enqueue(db, user, eight_parts())
    lost_before = metric("domos_leases_lost_total", monitor="notifymonitor")
    monitor = await monitors(NotifyMonitor, NOTIFY_CHAT_PER_S="50")
    call = monitor.telegram.call
    calls = 0

    async def calling(method: str, params: dict[str, Any]) -> Any:
        nonlocal calls
        answer = await call(method, params)
        calls += 1
        if calls == 2:
            # Another replica claimed the row (our lease ran out) and owns it now.
            await db.execute(
                "UPDATE outbox SET lease_owner = 'other-replica', lease_expires_at = ?"
                " WHERE id = ?",
                (utcnow() + timedelta(minutes=5), row_id),
            )
        return answer

    monitor.telegram.call = calling  # type: ignore[method-assign]

    assert await monitor.tick() == 0

    # Part 2 was in flight when the row changed hands; nothing after it went out from here.
    assert len(await sandbox.sent_to(user)) == 2
    row = await outbox_row(db, row_id)
    assert (row["status"], row["lease_owner"], row["parts_sent"]) == (
        "sending",
        "other-replica",
        1,
    )
    assert metric("domos_leases_lost_total", monitor="notifymonitor") - lost_before == 1


async def test_two_replicas_with_short_leases_send_each_part_once(db, sandbox, monitors):
    # The finding's reproduction: 8 parts at 1 part/s to the chat outlast a 5 s lease.
    user = await sandbox.new_user()
    row_id = await enqueue(db, user, eight_parts())
    one = await monitors(NotifyMonitor, NOTIFY_LEASE_S="5")
    two = await monitors(NotifyMonitor, NOTIFY_LEASE_S="5")

    first = asyncio.create_task(one.tick())
    for _ in range(500):  # until the first replica holds the row
        if (await outbox_row(db, row_id))["lease_owner"] == one.ctx.owner:
            break
        await asyncio.sleep(0.01)
    while not first.done():
        assert await two.tick() == 0
        await asyncio.sleep(0.5)
    assert await first == 1
    assert await two.tick() == 0

    texts = [m["text"] for m in await sandbox.sent_to(user)]
    assert [text.split(".")[0] for text in texts] == [f"Часть {n}" for n in range(1, 9)]
    row = await outbox_row(db, row_id)
    assert (row["status"], row["parts_sent"], row["lease_owner"]) == ("sent", 8, None)


async def test_an_answer_after_the_timeout_sends_one_copy_more_and_records_it(
    db, sandbox, monitors
):
    user = await sandbox.new_user()
    row_id = await enqueue(db, user, "Оплата получена")
    before = metric("domos_notify_messages_total", outcome="possibly_duplicated")
    monitor = await monitors(NotifyMonitor)
    # A client that gives up after 0.3 s; the sandbox delivers, then answers after 1 s.
    impatient = TelegramClient(monitor.ctx.settings, timeout_s=0.3)
    await impatient.open()
    await monitor.telegram.close()
    monitor.telegram = impatient
    await sandbox.control(
        "POST",
        "/faults",
        {"api": "telegram", "mode": "timeout", "count": 1, "delay_s": 1.0, "method": "sendMessage"},
    )

    assert await monitor.tick() == 0
    row = await outbox_row(db, row_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"].startswith("no answer to part 1 of 1")
    assert len(await sandbox.sent_to(user)) == 1  # Telegram took it all the same

    await db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (utcnow(), row_id))
    assert await monitor.tick() == 1

    # One extra copy, no more, and the row says so once sent.
    delivered = await sandbox.sent_to(user)
    assert [m["text"] for m in delivered] == ["Оплата получена"] * 2
    row = await outbox_row(db, row_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert row["last_error"].startswith("sent; an earlier attempt may have delivered a copy")
    assert row["telegram_message_id"] == delivered[-1]["message_id"]
    assert metric("domos_notify_messages_total", outcome="possibly_duplicated") - before == 1


async def test_a_broadcast_is_not_sent_to_a_member_who_lapsed_while_it_waited(
    db, sandbox, monitors
):
    tariff_id = await factories.tariff(db)
    active = await factories.member(db, sandbox)
    await factories.subscription(db, active, tariff_id)
    in_grace = await factories.member(db, sandbox)
    await factories.subscription(
        db, in_grace, tariff_id, status="grace", grace_until=utcnow() + timedelta(days=1)
    )
    grace_over = await factories.member(db, sandbox)
    await factories.subscription(
        db, grace_over, tariff_id, status="grace", grace_until=utcnow() - timedelta(minutes=1)
    )
    expired = await factories.member(db, sandbox)
    await factories.subscription(db, expired, tariff_id, status="expired")
    staff = await factories.member(db, sandbox, role="staff")
    everyone = [active, in_grace, grace_over, expired, staff]
    ids = {}
    for user in everyone:
        ids[user["telegram_id"]] = await enqueue(
            db, user["telegram_id"], "Рассылка", kind="broadcast", user_id=user["id"]
        )
    # Not a broadcast: a receipt reaches the lapsed member all the same.
    receipt = await enqueue(db, expired["telegram_id"], "Чек", user_id=expired["id"])
    skipped_before = metric("domos_notify_messages_total", outcome="skipped")
    monitor = await monitors(NotifyMonitor, NOTIFY_CHAT_PER_S="50")

    assert await monitor.tick() == 6

    rows = {chat: await outbox_row(db, row_id) for chat, row_id in ids.items()}
    for user in (active, in_grace, staff):
        assert rows[user["telegram_id"]]["status"] == "sent"
        assert len(await sandbox.sent_to(user["telegram_id"])) == 1
    for user in (grace_over, expired):
        row = rows[user["telegram_id"]]
        assert (row["status"], row["lease_owner"]) == ("dead", None)
        assert "no longer entitled" in row["last_error"]
    assert await sandbox.sent_to(grace_over["telegram_id"]) == []
    assert [m["text"] for m in await sandbox.sent_to(expired["telegram_id"])] == ["Чек"]
    assert (await outbox_row(db, receipt))["status"] == "sent"
    assert metric("domos_notify_messages_total", outcome="skipped") - skipped_before == 2
