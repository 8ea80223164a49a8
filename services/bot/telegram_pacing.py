"""The bot's messages paced at Telegram's limits, so a burst of updates draws no flood errors.

aiogram handles updates concurrently: 300 members sending /start at once are 300 sendMessage
at once, ten times what Telegram takes (Bot FAQ: about 30 messages per second overall, 1 per
second to one chat, 20 per minute to one group). Each message first reserves the next free slot
on the outbox relay's planner (monitors.decisions.rate_limit) and sleeps until it comes, so the
replies leave in order of arrival at the rate Telegram accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

from monitors.decisions.rate_limit import RateLimits, RatePlanner

#: Bot API methods that post a message into a chat (what Telegram's flood limits count).
SENDS_A_MESSAGE = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendAudio",
        "sendVoice",
        "sendVideo",
        "sendAnimation",
        "sendVideoNote",
        "sendSticker",
        "sendMediaGroup",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendPoll",
        "sendDice",
        "copyMessage",
        "forwardMessage",
    }
)
#: How often chats that no longer constrain anything are forgotten (bounds the memory).
FORGET_EVERY_S = 60.0
#: The smallest step when a reservation is moved on: float rounding can leave a wait of 1e-17
#: that would not move a timestamp in the millions of seconds at all.
MIN_STEP_S = 1e-6


class MessagePacer:
    def __init__(
        self, limits: RateLimits | None = None, clock: Callable[[], float] = monotonic
    ) -> None:
        self._planner = RatePlanner(limits)
        self._clock = clock
        self._forgotten_at = clock()

    def reserve(self, chat_id: int) -> float:
        """Take the next free slot for a message to `chat_id`: seconds until it comes.

        Slots are reserved ahead (the planner records a send at a future time), so concurrent
        senders queue up in order instead of all waking for the same slot.
        """
        now = self._clock()
        if now - self._forgotten_at >= FORGET_EVERY_S:
            self._planner.forget_idle(now)
            self._forgotten_at = now
        at = now
        while (wait := self._planner.try_acquire(chat_id, at)) > 0:
            at += max(wait, MIN_STEP_S)
        return at - now
