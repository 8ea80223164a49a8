"""Which failed Bot API calls the bot makes again (services/bot/telegram_retry.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import (
    ApproveChatJoinRequest,
    BanChatMember,
    GetUpdates,
    SendMessage,
    TelegramMethod,
)

from services.bot import telegram_retry
from services.bot.telegram_retry import RetryTransient


@pytest.fixture(autouse=True)
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits, recorded instead of waited."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(telegram_retry, "sleep", sleep)
    return waits


def _run(method: TelegramMethod[Any], failures: list[Exception]) -> tuple[Any, int]:
    """(the result, or the exception raised; the calls made) with `failures` raised first."""
    calls = 0

    async def make_request(bot: Any, method: Any) -> str:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return "ok"

    async def main() -> Any:
        try:
            return await RetryTransient()(make_request, None, method)  # type: ignore[arg-type]
        except Exception as exc:
            return exc

    return asyncio.run(main()), calls


APPROVE = ApproveChatJoinRequest(chat_id=-1001, user_id=7)
SEND = SendMessage(chat_id=7, text="Оплата получена")


def server_error(method: TelegramMethod[Any]) -> Exception:
    return TelegramServerError(method, "Internal Server Error")


def test_an_approval_is_made_again_after_5xx_and_network_failures(slept: list[float]) -> None:
    failures = [server_error(APPROVE), TelegramNetworkError(APPROVE, "reset")]
    assert _run(APPROVE, failures) == ("ok", 3)
    assert slept == [0.5, 1.0]


def test_flood_control_is_waited_out_for_any_method_but_polling(slept: list[float]) -> None:
    assert _run(SEND, [TelegramRetryAfter(SEND, "flood", 3)]) == ("ok", 2)
    assert slept == [3.0]
    updates = GetUpdates()
    result, calls = _run(updates, [TelegramRetryAfter(updates, "flood", 3)])
    assert (type(result), calls, slept) == (TelegramRetryAfter, 1, [3.0])


def test_a_message_is_never_sent_twice_after_an_unclear_failure(slept: list[float]) -> None:
    result, calls = _run(SEND, [server_error(SEND)])
    assert (type(result), calls, slept) == (TelegramServerError, 1, [])


@pytest.mark.parametrize("retry_after", [31, 600])
def test_a_long_flood_wait_is_not_waited_in_a_handler(retry_after: int) -> None:
    result, calls = _run(APPROVE, [TelegramRetryAfter(APPROVE, "flood", retry_after)])
    assert (type(result), calls) == (TelegramRetryAfter, 1)


def test_attempts_are_capped(slept: list[float]) -> None:
    ban = BanChatMember(chat_id=-1001, user_id=7)
    result, calls = _run(ban, [server_error(ban) for _ in range(10)])
    assert (type(result), calls, slept) == (TelegramServerError, 4, [0.5, 1.0, 2.0])
