from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from monitors.notifymonitor import NotifyMonitor
from tests.integration.monitors.conftest import FixedClock, metric, utcnow


async def enqueue(db: Any, chat_id: int, text: str = "Привет!", **columns: Any) -> int:
    values = {"dedupe_key": f"test:{uuid.uuid4().hex}", "chat_id": chat_id, "text": text, **columns}
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    return int(
        await db.fetchval(
            f"INSERT INTO outbox ({names}) VALUES ({marks}) RETURNING id", tuple(values.values())
        )
    )


async def outbox_row(db: Any, row_id: int) -> dict[str, Any]:
    row = await db.fetchone("SELECT * FROM outbox WHERE id = ?", (row_id,))
    assert row is not None
    return dict(row)


async def test_delivers_a_backlog_within_limits(db, sandbox, monitors):
    users = [await sandbox.new_user() for _ in range(12)]
    ids = [await enqueue(db, user, f"Сообщение для {user}") for user in users]
    ids.append(await enqueue(db, users[0], "Второе сообщение тому же участнику"))
    sent_before = metric("domos_notify_messages_total", outcome="sent")
    limited_before = metric("domos_notify_messages_total", outcome="rate_limited")
    monitor = await monitors(NotifyMonitor)

    assert await monitor.tick() == len(ids)

    for row_id in ids:
        row = await outbox_row(db, row_id)
        assert row["status"] == "sent"
        assert row["sent_at"] is not None
        assert row["lease_owner"] is None
        assert row["telegram_message_id"] is not None
    first = await sandbox.sent_to(users[0])
    assert [m["text"] for m in first] == [
        f"Сообщение для {users[0]}",
        "Второе сообщение тому же участнику",
    ]
    # The second message to the same chat waited its turn: Telegram answered no 429.
    assert metric("domos_notify_messages_total", outcome="sent") - sent_before == len(ids)
    assert metric("domos_notify_messages_total", outcome="rate_limited") == limited_before
    assert await monitor.tick() == 0


async def test_long_text_is_split_and_resumed_after_a_crash(db, sandbox, monitors):
    user = await sandbox.new_user()
    text = ("Абзац текста. " * 200).strip() + "\n\n" + ("Второй абзац. " * 200).strip()
    # A crashed relay left the row 'sending' under an expired lease, with part 1 already sent.
    row_id = await enqueue(
        db,
        user,
        text,
        status="sending",
        parts_sent=1,
        lease_owner="dead-replica",
        lease_expires_at=utcnow() - timedelta(seconds=1),
    )
    monitor = await monitors(NotifyMonitor)
    assert await monitor.tick() == 1
    delivered = await sandbox.sent_to(user)
    assert [m["text"] for m in delivered] == [("Второй абзац. " * 200).strip()]
    row = await outbox_row(db, row_id)
    assert (row["status"], row["parts_sent"]) == ("sent", 2)


async def test_a_live_lease_is_not_taken(db, sandbox, monitors):
    user = await sandbox.new_user()
    row_id = await enqueue(
        db,
        user,
        status="sending",
        lease_owner="other-replica",
        lease_expires_at=utcnow() + timedelta(minutes=5),
    )
    monitor = await monitors(NotifyMonitor)
    assert await monitor.tick() == 0
    assert await sandbox.sent_to(user) == []
    assert (await outbox_row(db, row_id))["lease_owner"] == "other-replica"


async def test_blocked_member_is_marked_unreachable_and_not_retried(db, sandbox, monitors):
    user = await sandbox.new_user()
    await db.execute("INSERT INTO users (telegram_id, first_name) VALUES (?, ?)", (user, "Ира"))
    await sandbox.control("POST", f"/telegram/users/{user}/block", {})
    first = await enqueue(db, user, "Счёт оплачен")
    blocked_before = metric("domos_notify_messages_total", outcome="blocked")
    monitor = await monitors(NotifyMonitor)
    assert await monitor.tick() == 1
    row = await outbox_row(db, first)
    assert (row["status"], row["last_error_code"]) == ("dead", 403)
    member = await db.fetchone(
        "SELECT is_reachable, blocked_at FROM users WHERE telegram_id = ?", (user,)
    )
    assert member["is_reachable"] is False
    assert member["blocked_at"] is not None
    # Later messages to the member are dead-lettered without another call to Telegram.
    await sandbox.control("POST", f"/telegram/users/{user}/unblock", {})
    second = await enqueue(db, user, "Напоминание")
    assert await monitor.tick() == 1
    assert (await outbox_row(db, second))["status"] == "dead"
    assert await sandbox.sent_to(user) == []
    assert metric("domos_notify_messages_total", outcome="blocked") - blocked_before == 2


async def test_chat_not_found_goes_to_dead_letters(db, sandbox, monitors):
    row_id = await enqueue(db, 999_999_999_001, "Кому-то")
    dead_before = metric("domos_notify_messages_total", outcome="dead")
    monitor = await monitors(NotifyMonitor)
    assert await monitor.tick() == 1
    row = await outbox_row(db, row_id)
    assert (row["status"], row["last_error_code"]) == ("dead", 400)
    assert "chat not found" in row["last_error"]
    assert metric("domos_notify_messages_total", outcome="dead") - dead_before == 1


async def test_server_errors_back_off_then_deliver(db, sandbox, monitors):
    user = await sandbox.new_user()
    row_id = await enqueue(db, user, "Через сбой")
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 1})
    monitor = await monitors(NotifyMonitor)
    assert await monitor.tick() == 0
    row = await outbox_row(db, row_id)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["next_attempt_at"] > utcnow()
    assert await monitor.tick() == 0  # not due yet
    await db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (utcnow(), row_id))
    assert await monitor.tick() == 1
    row = await outbox_row(db, row_id)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert len(await sandbox.sent_to(user)) == 1


async def test_dead_letter_after_the_last_attempt(db, sandbox, monitors):
    user = await sandbox.new_user()
    row_id = await enqueue(db, user, "Не повезло", attempts=2)
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 1})
    monitor = await monitors(NotifyMonitor, NOTIFY_MAX_ATTEMPTS="3")
    assert await monitor.tick() == 1
    row = await outbox_row(db, row_id)
    assert (row["status"], row["attempts"]) == ("dead", 3)


async def test_429_waits_retry_after_without_using_an_attempt(db, sandbox, monitors):
    user = await sandbox.new_user()
    # Telegram stricter than the relay believes: the second message in a row gets a 429.
    await sandbox.control("PUT", "/telegram/limits", {"per_chat_per_s": 0.2, "per_chat_burst": 1})
    first = await enqueue(db, user, "Раз")
    second = await enqueue(db, user, "Два")
    limited_before = metric("domos_notify_messages_total", outcome="rate_limited")
    monitor = await monitors(NotifyMonitor, NOTIFY_CHAT_PER_S="100")
    assert await monitor.tick() == 1
    assert (await outbox_row(db, first))["status"] == "sent"
    row = await outbox_row(db, second)
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("queued", 0, 429)
    assert row["next_attempt_at"] > utcnow() + timedelta(seconds=1)
    assert metric("domos_notify_messages_total", outcome="rate_limited") - limited_before == 1
    # Due again before retry_after has passed: deferred to its end, not sent, not waited for.
    await db.execute("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (utcnow(), second))
    assert await monitor.tick() == 0
    row = await outbox_row(db, second)
    assert (row["status"], row["attempts"]) == ("queued", 0)
    assert row["next_attempt_at"] > utcnow() + timedelta(seconds=1)
    assert len(await sandbox.sent_to(user)) == 1


async def test_two_replicas_never_send_the_same_message(db, sandbox, monitors):
    users = [await sandbox.new_user() for _ in range(40)]
    for user in users:
        await enqueue(db, user, f"Рассылка {user}")
    one = await monitors(NotifyMonitor, NOTIFY_BATCH_SIZE="7", NOTIFY_GLOBAL_PER_S="15")
    two = await monitors(NotifyMonitor, NOTIFY_BATCH_SIZE="7", NOTIFY_GLOBAL_PER_S="15")
    total = 0
    while True:
        done = await asyncio.gather(one.tick(), two.tick())
        total += sum(done)
        if sum(done) == 0:
            break
    assert total == 40
    for user in users:
        assert len(await sandbox.sent_to(user)) == 1
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") == 40


async def test_backlog_gauges_count_the_outbox_every_tick(db, sandbox, monitors):
    now = utcnow()
    user, second, third = [await sandbox.new_user() for _ in range(3)]
    # Due: two queued (the oldest due two minutes ago) and one failed retry due now.
    await enqueue(db, user, "Первое", next_attempt_at=now - timedelta(seconds=120))
    await enqueue(db, second, "Второе", next_attempt_at=now - timedelta(seconds=30))
    await enqueue(db, third, "Повтор", status="failed", attempts=1, next_attempt_at=now)
    # Waiting for later, in flight elsewhere, dead letters, history.
    later = now + timedelta(hours=1)
    await enqueue(db, user, "Позже", next_attempt_at=later)
    await enqueue(db, user, "Ретрай позже", status="failed", next_attempt_at=later)
    await enqueue(
        db,
        user,
        "В полёте",
        status="sending",
        lease_owner="other-replica",
        lease_expires_at=now + timedelta(minutes=5),
    )
    for _ in range(2):
        await enqueue(db, user, "Мёртвое", status="dead", attempts=8)
    await enqueue(db, user, "Отправлено", status="sent", sent_at=now - timedelta(days=1))
    monitor = await monitors(NotifyMonitor, clock=FixedClock(now))

    # The gauges show the backlog the tick started from, then the tick delivers the due rows.
    assert await monitor.tick() == 3
    assert _backlog() == {"queued": 3, "failed": 2, "sending": 1, "dead": 2}
    assert metric("domos_outbox_oldest_due_age_seconds") == pytest.approx(120.0)

    assert await monitor.tick() == 0
    assert _backlog() == {"queued": 1, "failed": 1, "sending": 1, "dead": 2}
    assert metric("domos_outbox_oldest_due_age_seconds") == 0.0


def _backlog() -> dict[str, float]:
    return {
        status: metric("domos_outbox_backlog", status=status)
        for status in ("queued", "failed", "sending", "dead")
    }
