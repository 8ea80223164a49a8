"""Pure scheduling arithmetic of the monitor runner: slots, jitter and backoff.

No clock, no randomness of their own: callers pass `now` and a uniform `rand` in [0, 1), so every
function is a table-testable mapping from numbers to numbers (arq `cron.py` style).
"""

from __future__ import annotations

import math

#: Tolerance for float division landing a hair past a slot boundary (0.3 / 0.1 = 2.9999…).
_EPSILON = 1e-9
#: 2**63 already dwarfs any sensible cap; bounding the exponent keeps the float finite.
_MAX_EXPONENT = 63


def next_run(last_started: float, interval_s: float, now: float) -> float:
    """The next slot after a tick scheduled at `last_started` ended at `now`.

    Slots lie on the grid `last_started + k * interval_s`. A tick that ended in time runs again
    one interval after it was scheduled. A tick that overran skips the slots it missed and runs
    at the first slot not earlier than `now`, so an overrun never causes a burst of catch-up
    ticks. Pass the unjittered slot as `last_started`: jitter then does not drift the grid.
    """
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    following = last_started + interval_s
    if now <= following:
        return following
    slots = math.ceil((now - last_started) / interval_s - _EPSILON)
    return last_started + slots * interval_s


def missed_slots(last_started: float, interval_s: float, now: float) -> int:
    """How many slots `next_run` skipped (0 when the tick ended in time)."""
    upcoming = next_run(last_started, interval_s, now)
    return max(0, round((upcoming - last_started) / interval_s) - 1)


def jitter_spread(interval_s: float, *, jitter_s: float | None, jitter_ratio: float) -> float:
    """Width of the random delay added to each slot: `jitter_s` if set, else a share of it."""
    spread = jitter_s if jitter_s is not None else jitter_ratio * interval_s
    if spread < 0:
        raise ValueError(f"jitter must not be negative, got {spread}")
    return spread


def jitter_offset(spread_s: float, rand: float) -> float:
    """A delay in [0, spread_s) from a uniform `rand` in [0, 1)."""
    return spread_s * rand


def backoff_delay(
    failures: int, *, base_s: float, max_s: float, rand: float, jitter_ratio: float = 0.5
) -> float:
    """Delay before retrying after `failures` consecutive failed ticks (failures >= 1).

    Capped exponential (`base_s * 2**(failures-1)`, at most `max_s`) with "equal jitter": the
    first `1 - jitter_ratio` of the delay is fixed and the rest random, so replicas that failed
    together spread out yet none retries sooner than half the capped delay (by default).
    """
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    if not 0.0 <= jitter_ratio <= 1.0:
        raise ValueError(f"jitter_ratio must be within [0, 1], got {jitter_ratio}")
    capped = min(max_s, base_s * 2.0 ** min(failures - 1, _MAX_EXPONENT))
    return capped * (1.0 - jitter_ratio) + capped * jitter_ratio * rand
