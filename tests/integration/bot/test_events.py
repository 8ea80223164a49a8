"""/events and its buttons for who paid (payments.entitlement), on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monitors import texts
from tests.integration.bot.conftest import BotProcess, Sandbox


def _start(sandbox: Sandbox) -> int:
    telegram_id = sandbox.new_user()
    sandbox.say(telegram_id, "/start")
    sandbox.wait_sent(telegram_id, 1)
    return telegram_id


def _user_id(bot: BotProcess, telegram_id: int) -> int:
    return int(bot.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,)))


def _subscribe(bot: BotProcess, user_id: int, status: str, ends: datetime) -> None:
    bot.db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO NOTHING",
        ("month", "Месяц", 150000, 30),
    )
    bot.db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, grace_until) VALUES (?, (SELECT id FROM tariffs WHERE code ="
        " 'month'), ?, ?, ?, ?)",
        (user_id, status, ends - timedelta(days=30), ends, ends + timedelta(days=2)),
    )


def _event(bot: BotProcess, capacity: int | None = None) -> tuple[int, str]:
    starts = datetime.now(UTC) + timedelta(days=3)
    title = f"Закрытый мастер-класс {starts.timestamp()}"
    event_id = bot.db.fetchval(
        "INSERT INTO events (title, starts_at, location, capacity) VALUES (?, ?, ?, ?)"
        " RETURNING id",
        (title, starts, "Secret address 7", capacity),
    )
    return int(event_id), title


def _buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {"inline_keyboard": []}
    return [b["callback_data"] for row in markup["inline_keyboard"] for b in row]


def test_events_are_listed_only_to_members_and_staff(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    event_id, title = _event(bot_process, capacity=5)
    now = datetime.now(UTC)

    outsider = _start(sandbox)
    lapsed = _start(sandbox)
    # Grace ran out an hour ago (tsmonitor has not yet moved the row to expired).
    lapsed_id = _user_id(bot_process, lapsed)
    _subscribe(bot_process, lapsed_id, "grace", now - timedelta(days=2, hours=1))
    for telegram_id in (outsider, lapsed):
        sandbox.say(telegram_id, "/events")
        reply = sandbox.wait_sent(telegram_id, 2)[1]
        assert reply["text"] == texts.EVENTS_FOR_MEMBERS
        assert title not in reply["text"]
        assert "Secret address 7" not in reply["text"]
        assert _buttons(reply) == []
        # A button kept from an older listing (or forged) is refused all the same.
        refused = sandbox.press(telegram_id, reply, f"event:reg:{event_id}")
        assert "с подпиской" in sandbox.wait_answer(refused["id"])["text"]

    # Staff need no subscription: they see the list and may register.
    staff = _start(sandbox)
    bot_process.db.execute(
        "UPDATE users SET role = 'staff' WHERE id = ?", (_user_id(bot_process, staff),)
    )
    sandbox.say(staff, "/events")
    listing = sandbox.wait_sent(staff, 2)[1]
    assert title in listing["text"]
    assert "Secret address 7" in listing["text"]
    query = sandbox.press(staff, listing, f"event:reg:{event_id}")
    assert "Вы зарегистрированы" in sandbox.wait_answer(query["id"])["text"]

    registered = bot_process.db.fetchall(
        "SELECT user_id FROM event_registrations WHERE event_id = ?", (event_id,)
    )
    assert [r["user_id"] for r in registered] == [_user_id(bot_process, staff)]


def test_a_lapsed_registrant_does_not_hold_a_seat(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    event_id, title = _event(bot_process, capacity=1)
    now = datetime.now(UTC)
    # Registered while paying; the subscription expired three days ago.
    lapsed = _start(sandbox)
    lapsed_id = _user_id(bot_process, lapsed)
    _subscribe(bot_process, lapsed_id, "expired", now - timedelta(days=3))
    bot_process.db.execute(
        "INSERT INTO event_registrations (event_id, user_id, registered_at) VALUES (?, ?, ?)",
        (event_id, lapsed_id, now - timedelta(days=5)),
    )

    member = _start(sandbox)
    member_id = _user_id(bot_process, member)
    _subscribe(bot_process, member_id, "active", now + timedelta(days=20))
    sandbox.say(member, "/events")
    listing = sandbox.wait_sent(member, 2)[1]
    line = next(part for part in listing["text"].split("•") if title in part)
    assert "Мест: 1" in line
    query = sandbox.press(member, listing, f"event:reg:{event_id}")
    assert "Вы зарегистрированы" in sandbox.wait_answer(query["id"])["text"]

    # The lapsed member's registration stays: it counts again once they pay.
    statuses = bot_process.db.fetchall(
        "SELECT user_id, status FROM event_registrations WHERE event_id = ? ORDER BY id",
        (event_id,),
    )
    assert [(r["user_id"], r["status"]) for r in statuses] == [
        (lapsed_id, "registered"),
        (member_id, "registered"),
    ]
