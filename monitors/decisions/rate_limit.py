"""The outbox rate planner: Telegram's limits as exact sliding windows, with no clock of its own.

Limits (Bot FAQ, see NOTES.md): about 30 messages per second overall, 1 per second to one chat,
20 per minute to one group (negative chat id). The global limit is paced evenly (one send per
1/rate seconds); `global_burst` > 1 lets a sender that woke late catch up by that many slots: in
any L seconds at most `global_per_s * L + global_burst` sends (a token bucket that deep), far
inside the burst of about a second's worth that Telegram and the sandbox take.

`try_acquire(chat_id, now)` either records a send at `now` and returns 0.0, or records nothing
and returns how long to wait. A 429 answer pauses a chat (or everything) until `retry_after` has
passed. The caller supplies `now` (monotonic seconds), so the planner is tested with a fake clock
and benchmarked with the real one.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimits:
    global_per_s: float = 30.0
    chat_per_s: float = 1.0
    group_per_min: int = 20
    #: Sends the global pacing may run ahead of its even schedule (1: strictly even spacing).
    global_burst: int = 1

    def __post_init__(self) -> None:
        if self.global_per_s <= 0 or self.chat_per_s <= 0 or self.group_per_min <= 0:
            raise ValueError("rate limits must be positive")
        if not 1 <= self.global_burst <= max_global_burst(self.global_per_s):
            raise ValueError(
                f"global_burst must be within 1..{max_global_burst(self.global_per_s)}"
                f" (the sends allowed in one second), got {self.global_burst}"
            )


def max_global_burst(global_per_s: float) -> int:
    """A burst never holds more than one second's worth of sends."""
    return max(1, math.floor(global_per_s))


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


class _Pacer:
    """Even spacing with a catch-up allowance (GCRA, the virtual-scheduling form).

    `next_at` is when the next send is due on the even schedule; a send is allowed from
    `tolerance_s` before it. Pacing from the schedule rather than from the actual send times
    means a sender that wakes late does not push every later slot back: late wake-ups would
    otherwise add up over a backlog (1 ms per send is 3 % at 30/s).
    """

    __slots__ = ("interval_s", "next_at", "tolerance_s")

    def __init__(self, interval_s: float, burst: int) -> None:
        self.interval_s = interval_s
        self.tolerance_s = (burst - 1) * interval_s
        self.next_at = -math.inf

    def wait(self, now: float) -> float:
        return max(0.0, self.next_at - self.tolerance_s - now)

    def record(self, now: float) -> None:
        self.next_at = max(self.next_at, now) + self.interval_s


class RatePlanner:
    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        # The global limit as even spacing, one send per 1/rate seconds, not bursts of N per
        # second: with bursts, a first burst that reaches Telegram late (network or load) and the
        # next one on time land within one second of each other and draw a 429. Evenly spaced
        # sends keep the same throughput and tolerate up to a whole second of jitter.
        # (A sliding one-second window on top would push the whole schedule back by every late
        # wake-up again, one window later: it is the drift the pacer exists to avoid.)
        self._global = _Pacer(1.0 / self.limits.global_per_s, self.limits.global_burst)
        self._chat_gap_s = 1.0 / self.limits.chat_per_s
        self._last_send: dict[int, float] = {}
        self._groups: dict[int, _Window] = {}
        self._paused_until: dict[int, float] = {}
        self._global_paused_until = 0.0

    def global_wait_s(self, now: float) -> float:
        """Seconds until any message may be sent (0.0: now); no chat's own limit included."""
        return max(self._global.wait(now), self._global_paused_until - now, 0.0)

    def wait_s(self, chat_id: int, now: float) -> float:
        """Seconds until a message to `chat_id` may be sent (0.0: now)."""
        waits = [self.global_wait_s(now)]
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

    def answered(self, chat_id: int, now: float) -> None:
        """The send to `chat_id` recorded last was answered at `now`.

        A chat's own limits then count from the answer instead of the start: the next message to
        it starts a full gap after Telegram had the last one, so no network delay can bring two
        closer together on Telegram's side than the limit (global pacing keeps the start times:
        it has a second of slack in Telegram's bucket).
        """
        last = self._last_send.get(chat_id)
        if last is not None and now > last:
            self._last_send[chat_id] = now
        window = self._groups.get(chat_id) if is_group(chat_id) else None
        if window is not None and window.times and now > window.times[-1]:
            window.times[-1] = now

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
