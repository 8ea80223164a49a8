"""Table tests of the pure scheduling functions."""

from __future__ import annotations

import pytest

from runtime.monitor.schedule import (
    backoff_delay,
    jitter_offset,
    jitter_spread,
    missed_slots,
    next_run,
)


@pytest.mark.parametrize(
    ("last_started", "interval_s", "now", "expected", "skipped"),
    [
        # Finished in time: one interval after the scheduled start.
        (0.0, 10.0, 0.5, 10.0, 0),
        (0.0, 10.0, 9.99, 10.0, 0),
        # Ended exactly on the next slot: run it now.
        (0.0, 10.0, 10.0, 10.0, 0),
        # Overran into the second slot: skip slot 10, run at 20.
        (0.0, 10.0, 10.01, 20.0, 1),
        (0.0, 10.0, 19.5, 20.0, 1),
        # Ended exactly on a later slot: that slot runs now, the ones before are skipped.
        (0.0, 10.0, 30.0, 30.0, 2),
        # Long overrun: many slots skipped, never a burst.
        (100.0, 10.0, 1234.5, 1240.0, 113),
        # Float grid: 0.3 / 0.1 is 2.9999…, still the slot at 0.3, not 0.4.
        (0.0, 0.1, 0.3, 0.30000000000000004, 2),
        # Clock read before the slot started (fake clocks, coarse timers).
        (50.0, 10.0, 49.0, 60.0, 0),
    ],
)
def test_next_run_skips_missed_slots(
    last_started: float, interval_s: float, now: float, expected: float, skipped: int
) -> None:
    assert next_run(last_started, interval_s, now) == pytest.approx(expected)
    assert missed_slots(last_started, interval_s, now) == skipped


def test_next_run_is_never_in_the_past_of_now() -> None:
    for step in range(1, 500):
        now = step * 0.37
        assert next_run(0.0, 1.3, now) >= now - 1e-9


def test_next_run_rejects_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        next_run(0.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("failures", "base_s", "max_s", "rand", "jitter_ratio", "expected"),
    [
        # No jitter: plain doubling.
        (1, 1.0, 300.0, 0.0, 0.0, 1.0),
        (2, 1.0, 300.0, 0.0, 0.0, 2.0),
        (3, 1.0, 300.0, 0.0, 0.0, 4.0),
        (9, 1.0, 300.0, 0.0, 0.0, 256.0),
        # Capped.
        (10, 1.0, 300.0, 0.0, 0.0, 300.0),
        (10_000, 1.0, 300.0, 0.0, 0.0, 300.0),
        # Equal jitter: half fixed, half random.
        (1, 2.0, 300.0, 0.0, 0.5, 1.0),
        (1, 2.0, 300.0, 0.5, 0.5, 1.5),
        (1, 2.0, 300.0, 0.999, 0.5, 1.999),
        (3, 2.0, 300.0, 0.0, 0.5, 4.0),
        # The cap bounds the jittered value too.
        (20, 2.0, 60.0, 0.999, 0.5, 59.97),
        # Full jitter.
        (4, 1.0, 300.0, 0.25, 1.0, 2.0),
    ],
)
def test_backoff_delay(
    failures: int, base_s: float, max_s: float, rand: float, jitter_ratio: float, expected: float
) -> None:
    delay = backoff_delay(
        failures, base_s=base_s, max_s=max_s, rand=rand, jitter_ratio=jitter_ratio
    )
    assert delay == pytest.approx(expected)


@pytest.mark.parametrize(
    ("failures", "jitter_ratio", "message"),
    [(0, 0.5, "failures"), (-1, 0.5, "failures"), (1, -0.1, "jitter_ratio"), (1, 1.5, "jitter")],
)
def test_backoff_delay_rejects_bad_arguments(
    failures: int, jitter_ratio: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(failures, base_s=1.0, max_s=10.0, rand=0.0, jitter_ratio=jitter_ratio)


@pytest.mark.parametrize(
    ("interval_s", "jitter_s", "jitter_ratio", "rand", "spread", "offset"),
    [
        (60.0, None, 0.1, 0.0, 6.0, 0.0),
        (60.0, None, 0.1, 0.5, 6.0, 3.0),
        (60.0, 2.0, 0.1, 0.5, 2.0, 1.0),  # an absolute jitter wins over the ratio
        (60.0, 0.0, 0.1, 0.9, 0.0, 0.0),
        (1.0, None, 0.0, 0.9, 0.0, 0.0),
    ],
)
def test_jitter(
    interval_s: float,
    jitter_s: float | None,
    jitter_ratio: float,
    rand: float,
    spread: float,
    offset: float,
) -> None:
    width = jitter_spread(interval_s, jitter_s=jitter_s, jitter_ratio=jitter_ratio)
    assert width == pytest.approx(spread)
    assert jitter_offset(width, rand) == pytest.approx(offset)


def test_jitter_spread_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        jitter_spread(10.0, jitter_s=-1.0, jitter_ratio=0.1)
