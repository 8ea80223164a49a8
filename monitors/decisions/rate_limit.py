"""The outbox rate planner: Telegram's limits as exact sliding windows, with no clock of its own.

Limits (Bot FAQ, see NOTES.md): about 30 messages per second overall, 1 per second to one chat,
20 per minute to one group (negative chat id). `try_acquire(chat_id, now)` either records a send
at `now` and returns 0.0, or records nothing and returns how long to wait. A 429 answer pauses a
chat (or everything) until `retry_after` has passed. The caller supplies `now` (monotonic seconds),
so the planner is tested with a fake clock and benchmarked with the real one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    global_per_s: float = 30.0
    chat_per_s: float = 1.0
    group_per_min: int = 20

    def __post_init__(self) -> None:
        if self.global_per_s <= 0 or self.chat_per_s <= 0 or self.group_per_min <= 0:
            raise ValueError("rate limits must be positive")


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; users positive."""
    return chat_id < 0


class _Window:
    """At most `count` events in any interval of `span_s` seconds."""

    __slots__ = ("count", "span_s", "times")

    def __init__(self, count: int, span_s: float) -> None:
        self.count = count
        self.span_s = span_s
        self.times: deque[float] = deque()

    def wait(self, now: float) -> float:
        # The same arithmetic as the wait below: `t <= now - span` and `t + span - now > 0` can
        # both hold in floating point, and then a full window would report no wait forever.
        while self.times and self.times[0] + self.span_s <= now:
            self.times.popleft()
        if len(self.times) < self.count:
            return 0.0
        return self.times[0] + self.span_s - now

    def record(self, now: float) -> None:
        self.times.append(now)


class RatePlanner:
    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        # The global limit as even spacing, one send per 1/rate seconds, not bursts of N per
        # second: with bursts, a first burst that reaches Telegram late (network or load) and the
        # next one on time land within one second of each other and draw a 429. Evenly spaced
        # sends keep the same throughput and tolerate up to a whole second of jitter.
        self._global = _Window(1, 1.0 / self.limits.global_per_s)
        self._chat_gap_s = 1.0 / self.limits.chat_per_s
        self._last_send: dict[int, float] = {}
        self._groups: dict[int, _Window] = {}
        self._paused_until: dict[int, float] = {}
        self._global_paused_until = 0.0

    def wait_s(self, chat_id: int, now: float) -> float:
        """Seconds until a message to `chat_id` may be sent (0.0: now)."""
        waits = [self._global.wait(now), self._global_paused_until - now]
        last = self._last_send.get(chat_id)
        if last is not None:
            waits.append(last + self._chat_gap_s - now)
        waits.append(self._paused_until.get(chat_id, 0.0) - now)
        if is_group(chat_id):
            window = self._groups.get(chat_id)
            if window is not None:
                waits.append(window.wait(now))
        return max(0.0, *waits)

    def try_acquire(self, chat_id: int, now: float) -> float:
        """Record a send at `now` and return 0.0; or return the wait and record nothing."""
        wait = self.wait_s(chat_id, now)
        if wait > 0:
            return wait
        self._global.record(now)
        self._last_send[chat_id] = now
        if is_group(chat_id):
            window = self._groups.get(chat_id)
            if window is None:
                window = self._groups[chat_id] = _Window(self.limits.group_per_min, 60.0)
            window.record(now)
        return 0.0

    def pause_chat(self, chat_id: int, until: float) -> None:
        """A 429 for one chat: nothing to it before `until`."""
        self._paused_until[chat_id] = max(until, self._paused_until.get(chat_id, 0.0))

    def pause_all(self, until: float) -> None:
        """A 429 that throttles the bot as a whole."""
        self._global_paused_until = max(until, self._global_paused_until)

    def forget_idle(self, now: float) -> None:
        """Drop state of chats that no longer constrain anything (keeps memory bounded)."""
        idle_user = now - self._chat_gap_s
        for chat_id in [c for c, t in self._last_send.items() if t <= idle_user]:
            del self._last_send[chat_id]
        for chat_id in [c for c, w in self._groups.items() if w.wait(now) == 0 and not w.times]:
            del self._groups[chat_id]
        for chat_id in [c for c, t in self._paused_until.items() if t <= now]:
            del self._paused_until[chat_id]
