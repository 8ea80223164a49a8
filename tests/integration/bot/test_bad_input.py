"""Input the member's client may send, tampered or late: a clear answer, nothing lost or broken."""

from __future__ import annotations

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
