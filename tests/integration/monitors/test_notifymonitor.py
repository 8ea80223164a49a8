from __future__ import annotations

import asyncio
import itertools
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


# --- the pipeline: claims beside the sends ------------------------------------------------------


def spy_claims(monitor: NotifyMonitor, db: Any) -> list[int]:
    """Wrap the monitor's claim; record how many of its rows were still unsent at each claim."""
    unsent_at_claim: list[int] = []
    claim = monitor._claim

    async def spying() -> Any:
        unsent_at_claim.append(
            await db.fetchval(
                "SELECT count(*) FROM outbox WHERE status = 'sending' AND lease_owner = ?",
                (monitor.ctx.owner,),
            )
        )
        return await claim()

    monitor._claim = spying  # type: ignore[method-assign]
    return unsent_at_claim


async def test_one_tick_claims_the_next_batch_while_the_last_is_still_sending(
    db, sandbox, monitors
):
    users = [await sandbox.new_user() for _ in range(10)]
    ids = [await enqueue(db, user, f"Пакетами {user}") for user in users]
    # 10/s evenly: a batch of 3 takes 0.2 s to start, long beside a claim.
    monitor = await monitors(
        NotifyMonitor, NOTIFY_BATCH_SIZE="3", NOTIFY_GLOBAL_PER_S="10", NOTIFY_GLOBAL_BURST="1"
    )
    unsent_at_claim = spy_claims(monitor, db)

    assert await monitor.tick() == 10

    # 3 + 3 + 3 + 1: the short batch shows the backlog is drained, so no fifth claim. Every
    # later claim ran while rows of the one before were still unsent, never more than a batch.
    assert len(unsent_at_claim) == 4
    assert unsent_at_claim[0] == 0
    assert all(0 < unsent <= 3 for unsent in unsent_at_claim[1:]), unsent_at_claim
    assert [(await outbox_row(db, row_id))["status"] for row_id in ids] == ["sent"] * 10
    for user in users:
        assert len(await sandbox.sent_to(user)) == 1
    assert await monitor.tick() == 0


async def test_a_tick_stops_claiming_after_its_refill_time(db, sandbox, monitors, monkeypatch):
    monkeypatch.setattr("monitors.notifymonitor.REFILL_FOR_S", 0.0)
    for _ in range(5):
        await enqueue(db, await sandbox.new_user(), "По одному пакету за тик")
    monitor = await monitors(NotifyMonitor, NOTIFY_BATCH_SIZE="2")
    assert [await monitor.tick() for _ in range(4)] == [2, 2, 1, 0]


async def test_pipelined_batches_keep_one_chat_to_its_rate(db, sandbox, monitors):
    # Telegram strict for this test: a second message to the chat within 0.8 s is a 429.
    await sandbox.control("PUT", "/telegram/limits", {"per_chat_per_s": 1.25, "per_chat_burst": 1})
    user = await sandbox.new_user()
    ids = [await enqueue(db, user, f"Часть {n}") for n in range(3)]
    limited_before = metric("domos_notify_messages_total", outcome="rate_limited")
    # One row per claim: each message to the chat comes from another batch.
    monitor = await monitors(NotifyMonitor, NOTIFY_BATCH_SIZE="1")

    assert await monitor.tick() == 3

    assert [m["text"] for m in await sandbox.sent_to(user)] == ["Часть 0", "Часть 1", "Часть 2"]
    assert metric("domos_notify_messages_total", outcome="rate_limited") == limited_before
    sent_at = [(await outbox_row(db, row_id))["sent_at"] for row_id in ids]
    assert all((b - a).total_seconds() > 0.8 for a, b in itertools.pairwise(sent_at))


async def test_rows_held_past_half_their_lease_are_given_back_unsent(db, sandbox, monitors):
    user = await sandbox.new_user()
    ids = [await enqueue(db, user, f"Очередь {n}") for n in range(4)]
    # 1 message/s to the chat: the fourth would start 3 s after the claim, past 5 s / 2.
    monitor = await monitors(NotifyMonitor, NOTIFY_LEASE_S="5")

    assert await monitor.tick() == 3

    rows = [await outbox_row(db, row_id) for row_id in ids]
    assert [row["status"] for row in rows] == ["sent", "sent", "sent", "queued"]
    assert (rows[3]["lease_owner"], rows[3]["attempts"]) == (None, 0)
    assert len(await sandbox.sent_to(user)) == 3


async def test_stop_gives_back_the_rows_not_started(db, sandbox, monitors):
    user = await sandbox.new_user()
    ids = [await enqueue(db, user, f"До остановки {n}") for n in range(3)]
    monitor = await monitors(NotifyMonitor)
    first_sent = asyncio.Event()
    finish_sent = monitor._finish_sent

    async def finishing(*args: Any) -> bool:
        written = await finish_sent(*args)
        first_sent.set()
        return written

    monitor._finish_sent = finishing  # type: ignore[method-assign]
    tick = asyncio.create_task(monitor.tick())
    await asyncio.wait_for(first_sent.wait(), 10)
    monitor.ctx.stop_event.set()

    assert await tick == 1

    rows = [await outbox_row(db, row_id) for row_id in ids]
    assert [row["status"] for row in rows] == ["sent", "queued", "queued"]
    assert all(row["lease_owner"] is None and row["attempts"] == 0 for row in rows[1:])
    assert len(await sandbox.sent_to(user)) == 1
