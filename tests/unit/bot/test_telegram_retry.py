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
from services.bot.telegram_pacing import MessagePacer
from services.bot.telegram_retry import FLOOD_WAIT_BUDGET_S, RetryTransient


class FakeTime:
    """A clock that only the recorded sleeps move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """The waits, recorded instead of waited, and the clock they move."""
    time = FakeTime()
    monkeypatch.setattr(telegram_retry, "sleep", time.sleep)
    return time


@pytest.fixture
def slept(fake_time: FakeTime) -> list[float]:
    return fake_time.slept


@pytest.fixture
def middleware(fake_time: FakeTime) -> RetryTransient:
    return RetryTransient(MessagePacer(clock=fake_time))


def _run(
    middleware: RetryTransient, method: TelegramMethod[Any], failures: list[Exception]
) -> tuple[Any, int]:
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
            return await middleware(make_request, None, method)  # type: ignore[arg-type]
        except Exception as exc:
            return exc

    return asyncio.run(main()), calls


APPROVE = ApproveChatJoinRequest(chat_id=-1001, user_id=7)
SEND = SendMessage(chat_id=7, text="Оплата получена")


def server_error(method: TelegramMethod[Any]) -> Exception:
    return TelegramServerError(method, "Internal Server Error")


def test_an_approval_is_made_again_after_5xx_and_network_failures(
    middleware: RetryTransient, slept: list[float]
) -> None:
    failures = [server_error(APPROVE), TelegramNetworkError(APPROVE, "reset")]
    assert _run(middleware, APPROVE, failures) == ("ok", 3)
    assert slept == [0.5, 1.0]


def test_flood_control_is_waited_out_for_any_method_but_polling(
    middleware: RetryTransient, slept: list[float]
) -> None:
    assert _run(middleware, SEND, [TelegramRetryAfter(SEND, "flood", 3)]) == ("ok", 2)
    assert slept == [3.0]
    updates = GetUpdates()
    result, calls = _run(middleware, updates, [TelegramRetryAfter(updates, "flood", 3)])
    assert (type(result), calls, slept) == (TelegramRetryAfter, 1, [3.0])


def test_a_message_is_never_sent_twice_after_an_unclear_failure(
    middleware: RetryTransient, slept: list[float]
) -> None:
    result, calls = _run(middleware, SEND, [server_error(SEND)])
    assert (type(result), calls, slept) == (TelegramServerError, 1, [])


@pytest.mark.parametrize("retry_after", [31, 600])
def test_a_long_flood_wait_is_not_waited_in_a_handler(
    middleware: RetryTransient, retry_after: int
) -> None:
    result, calls = _run(middleware, APPROVE, [TelegramRetryAfter(APPROVE, "flood", retry_after)])
    assert (type(result), calls) == (TelegramRetryAfter, 1)


def test_attempts_are_capped(middleware: RetryTransient, slept: list[float]) -> None:
    ban = BanChatMember(chat_id=-1001, user_id=7)
    result, calls = _run(middleware, ban, [server_error(ban) for _ in range(10)])
    assert (type(result), calls, slept) == (TelegramServerError, 4, [0.5, 1.0, 2.0])


def test_flood_waits_are_no_failed_attempts_but_bounded_in_total(
    middleware: RetryTransient, slept: list[float]
) -> None:
    # A burst answered with 429 again and again: every wait is made, the message goes out.
    floods = [TelegramRetryAfter(SEND, "flood", 1) for _ in range(10)]
    assert _run(middleware, SEND, floods) == ("ok", 11)
    assert slept == [1.0] * 10
    slept.clear()
    other = SendMessage(chat_id=8, text="Оплата получена")
    endless = [TelegramRetryAfter(other, "flood", 30) for _ in range(100)]
    result, calls = _run(middleware, other, endless)
    assert type(result) is TelegramRetryAfter
    flood_waits = [wait for wait in slept if wait == 30.0]
    assert flood_waits == [30.0] * int(FLOOD_WAIT_BUDGET_S // 30)
    assert calls == len(flood_waits) + 1


def test_messages_wait_for_their_slot_at_telegrams_rate(
    middleware: RetryTransient, fake_time: FakeTime
) -> None:
    for chat_id in range(1, 61):  # 60 members answered at once: two seconds at 30/s
        assert _run(middleware, SendMessage(chat_id=chat_id, text="ok"), []) == ("ok", 1)
    assert fake_time.now - 1000.0 == pytest.approx(59 / 30)
    before = fake_time.now
    _run(middleware, SendMessage(chat_id=60, text="again"), [])  # one chat: 1 per second
    assert fake_time.now - before == pytest.approx(1.0)
    before = fake_time.now
    _run(middleware, APPROVE, [])  # not a message: not paced
    assert fake_time.now == before


def test_concurrent_senders_queue_for_slots_in_order() -> None:
    time = FakeTime()
    pacer = MessagePacer(clock=time)
    waits = [pacer.reserve(chat_id) for chat_id in range(1, 301)]
    assert waits == sorted(waits)
    assert waits[-1] == pytest.approx(299 / 30)
    assert pacer.reserve(1) == pytest.approx(299 / 30 + 1 / 30)
