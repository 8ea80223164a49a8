"""Input the member's client may send, tampered or late: a clear answer, nothing lost or broken."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitors import texts
from tests.integration.bot.conftest import BotProcess, Sandbox


def registered(sandbox: Sandbox) -> tuple[int, dict[str, object]]:
    """A new member and the bot's welcome (a message to press buttons on)."""
    telegram_id = sandbox.new_user()
    sandbox.say(telegram_id, "/start")
    return telegram_id, sandbox.wait_sent(telegram_id, 1)[0]


@pytest.mark.parametrize(
    "data",
    [
        "tariff:²",
        "event:reg:²",
        "event:cancel:²",
        "survey:1:²:0",
        "tariff:99999999999999999999999",
        "event:reg:99999999999999999999",
        "survey:99999999999999999999:0:0",
    ],
)
def test_a_tampered_button_is_answered_as_a_stale_one(
    sandbox: Sandbox, bot_process: BotProcess, data: str
) -> None:
    telegram_id, message = registered(sandbox)
    failures_before = bot_process.log_text().count('"update_failed"')
    query = sandbox.press(telegram_id, message, data)
    assert sandbox.wait_answer(query["id"])["text"] == texts.UNKNOWN_BUTTON
    assert bot_process.log_text().count('"update_failed"') == failures_before


def test_a_registration_cannot_be_canceled_once_the_event_has_started(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    telegram_id, message = registered(sandbox)
    user_id = bot_process.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,))
    started = datetime.now(UTC) - timedelta(seconds=27)
    event_id = bot_process.db.fetchval(
        "INSERT INTO events (title, starts_at) VALUES (?, ?) RETURNING id",
        (f"Завтрак {started.timestamp()}", started),
    )
    bot_process.db.execute(
        "INSERT INTO event_registrations (event_id, user_id, status, registered_at)"
        " VALUES (?, ?, 'registered', ?)",
        (event_id, user_id, started - timedelta(days=1)),
    )
    query = sandbox.press(telegram_id, message, f"event:cancel:{event_id}")

    answer = sandbox.wait_answer(query["id"])["text"]
    assert answer == texts.REGISTRATION_REPLIES["too_late"]
    status = bot_process.db.fetchval(
        "SELECT status FROM event_registrations WHERE event_id = ? AND user_id = ?",
        (event_id, user_id),
    )
    assert status == "registered"


def test_a_blank_survey_answer_is_refused_and_the_question_stays_open(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    telegram_id, _ = registered(sandbox)
    user_id = bot_process.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,))
    now = datetime.now(UTC)
    # The free-text question is the last: the choices already answered.
    survey_id = bot_process.db.fetchval(
        "INSERT INTO surveys (user_id, month, status, sent_at) VALUES (?, ?, 'in_progress', ?)"
        " RETURNING id",
        (user_id, f"{now:%Y-%m}", now),
    )
    for key, answer in (("deals", "0"), ("satisfaction", "5")):
        bot_process.db.execute(
            "INSERT INTO survey_responses (survey_id, question_key, answer, answered_at)"
            " VALUES (?, ?, ?, ?)",
            (survey_id, key, answer, now),
        )
    sandbox.say(telegram_id, "   ")
    assert sandbox.wait_sent(telegram_id, 2)[1]["text"] == texts.SURVEY_EMPTY_ANSWER
    assert bot_process.db.fetchval("SELECT status FROM surveys WHERE id = ?", (survey_id,)) == (
        "in_progress"
    )
    sandbox.say(telegram_id, "  Больше встреч  ")
    assert sandbox.wait_sent(telegram_id, 3)[2]["text"] == texts.SURVEY_DONE
    assert (
        bot_process.db.fetchval(
            "SELECT answer FROM survey_responses"
            " WHERE survey_id = ? AND question_key = 'suggestion'",
            (survey_id,),
        )
        == "Больше встреч"
    )
