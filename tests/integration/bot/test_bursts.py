"""Many updates at the same moment, as aiogram handles them: concurrently.

Each test sends its updates through the sandbox at once (threads), so they reach the bot in one
getUpdates batch and their handlers run side by side against the real database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from monitors import texts
from tests.integration.bot.conftest import BotProcess, Sandbox


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=min(len(calls), 32)) as pool:
        return list(pool.map(lambda call: call(), calls))


def member_row_id(bot: BotProcess, telegram_id: int) -> int:
    return int(bot.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,)))


def one_tariff(bot: BotProcess) -> int:
    # One active tariff for the module: /subscribe goes straight to the link.
    bot.db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO NOTHING",
        ("month", "Месяц", 150000, 30),
    )
    return int(bot.db.fetchval("SELECT id FROM tariffs WHERE code = 'month'"))


def activate(bot: BotProcess, user_id: int) -> None:
    now = datetime.now(UTC)
    bot.db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end) VALUES (?, ?, 'active', ?, ?)",
        (user_id, one_tariff(bot), now - timedelta(days=1), now + timedelta(days=29)),
    )


def registered(sandbox: Sandbox) -> int:
    telegram_id = sandbox.new_user()
    sandbox.say(telegram_id, "/start")
    sandbox.wait_sent(telegram_id, 1)
    return telegram_id


def settled(sandbox: Sandbox, chat_id: int, quiet_s: float = 1.5) -> list[dict[str, Any]]:
    """What the bot sent to the chat once nothing more arrived for `quiet_s`."""
    seen = sandbox.sent(chat_id)
    while True:
        time.sleep(quiet_s)
        now = sandbox.sent(chat_id)
        if len(now) == len(seen):
            return now
        seen = now


def test_subscribe_sent_twice_at_once_makes_one_payment(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    one_tariff(bot_process)
    telegram_id = registered(sandbox)
    at_once([lambda: sandbox.say(telegram_id, "/subscribe") for _ in range(5)])
    replies = sandbox.wait_sent(telegram_id, 6)[1:]

    payments = bot_process.db.fetchall(
        "SELECT * FROM payments WHERE user_id = ?", (member_row_id(bot_process, telegram_id),)
    )
    assert len(payments) == 1, [p["id"] for p in payments]
    url = payments[0]["confirmation_url"]
    assert url
    assert all(url in reply["text"] for reply in replies), [r["text"] for r in replies]
    at_provider = [
        p
        for p in sandbox.control("GET", "/yookassa/payments")
        if str(p["metadata"].get("telegram_id")) == str(telegram_id)
    ]
    assert len(at_provider) == 1


def test_a_burst_of_300_members_is_answered_within_telegrams_flood_limits(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    members = at_once([sandbox.new_user for _ in range(300)])
    failures_before = bot_process.log_text().count('"update_failed"')
    sandbox.control("PUT", "/telegram/limits", {"enabled": True})
    try:
        at_once([lambda m=member: sandbox.say(m, "/start") for member in members])
        # 300 replies at 30 messages/s: 10 s, given time to spare for a loaded machine.
        deadline = time.monotonic() + 60
        waiting = list(members)
        while waiting and time.monotonic() < deadline:
            waiting = [member for member in waiting if not sandbox.sent(member)]
            time.sleep(0.5)
    finally:
        sandbox.control("PUT", "/telegram/limits", {"enabled": False})
    assert len(waiting) == 0, f"{len(waiting)} of {len(members)} members got no reply"
    assert bot_process.log_text().count('"update_failed"') == failures_before
    assert [len(sandbox.sent(member)) for member in members] == [1] * len(members)


def test_two_options_of_one_question_pressed_at_once_keep_the_first(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    telegram_id = registered(sandbox)
    user_id = member_row_id(bot_process, telegram_id)
    activate(bot_process, user_id)
    sandbox.say(telegram_id, "/survey")
    question = sandbox.wait_sent(telegram_id, 2)[1]
    options = [
        b["callback_data"] for row in question["reply_markup"]["inline_keyboard"] for b in row
    ]
    queries = at_once(
        [lambda data=data: sandbox.press(telegram_id, question, data) for data in options]
    )
    answers = [sandbox.wait_answer(query["id"]).get("text") for query in queries]

    sent = settled(sandbox, telegram_id)
    assert [m["text"].startswith("Вопрос 2 из 3") for m in sent[2:]] == [True], sent[2:]
    stored = bot_process.db.fetchall(
        "SELECT r.answer FROM survey_responses r JOIN surveys s ON s.id = r.survey_id"
        " WHERE s.user_id = ?",
        (user_id,),
    )
    assert len(stored) == 1
    assert answers.count(None) == 1, answers  # the kept press answered without a text
    assert answers.count(texts.SURVEY_STALE) == len(options) - 1
