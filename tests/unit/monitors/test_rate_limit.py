from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from monitors.decisions.rate_limit import RateLimits, RatePlanner
from services.sandbox.config import FloodLimits
from services.sandbox.telegram.limits import FloodControl


def drain(planner: RatePlanner, chats: list[int], step_s: float = 0.001) -> list[tuple[float, int]]:
    """Send one message per entry of `chats` as fast as the planner allows (fake clock)."""
    now = 0.0
    sent: list[tuple[float, int]] = []
    pending = list(chats)
    while pending:
        progressed = False
        for chat_id in list(pending):
            if planner.try_acquire(chat_id, now) == 0.0:
                sent.append((now, chat_id))
                pending.remove(chat_id)
                progressed = True
        if not progressed:
            now += min(planner.wait_s(chat_id, now) for chat_id in pending) or step_s
    return sent


def max_in_window(times: list[float], span: float) -> int:
    best = 0
    for i, start in enumerate(times):
        best = max(best, sum(1 for t in times[i:] if t < start + span))
    return best


def test_global_limit_is_thirty_per_second_evenly_spaced_and_fully_used():
    planner = RatePlanner()
    sent = drain(planner, list(range(1, 601)))
    times = [t for t, _ in sent]
    # (A hair under one second: 30 float steps of 1/30 s add up to 0.9999999999999999.)
    assert max_in_window(times, 1.0 - 1e-9) == 30
    # Evenly spaced, never a burst: no two sends closer than 1/30 s.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(1 / 30)
    # 600 messages at 30/s: the last one goes out at 599/30 s.
    assert times[-1] == pytest.approx(599 / 30, abs=0.01)


def test_one_message_per_second_to_one_chat():
    sent = drain(RatePlanner(), [42] * 5)
    assert [t for t, _ in sent] == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])


def test_twenty_per_minute_to_a_group():
    sent = drain(RatePlanner(), [-100] * 25)
    times = [t for t, _ in sent]
    assert max_in_window(times, 60.0) == 20
    assert times[19] == pytest.approx(19.0)
    assert times[20] == pytest.approx(60.0)


def test_wait_is_returned_without_recording():
    planner = RatePlanner()
    assert planner.try_acquire(7, 10.0) == 0.0
    assert planner.try_acquire(7, 10.25) == pytest.approx(0.75)
    assert planner.try_acquire(7, 10.5) == pytest.approx(0.5)
    assert planner.try_acquire(7, 11.0) == 0.0


def test_pause_after_429():
    planner = RatePlanner()
    planner.pause_chat(5, until=30.0)
    assert planner.wait_s(5, 10.0) == pytest.approx(20.0)
    assert planner.wait_s(6, 10.0) == 0.0
    planner.pause_all(until=12.0)
    assert planner.wait_s(6, 10.0) == pytest.approx(2.0)
    assert planner.try_acquire(6, 12.0) == 0.0


def test_configurable_limits():
    planner = RatePlanner(RateLimits(global_per_s=5, chat_per_s=2, group_per_min=3))
    sent = drain(planner, [1] * 4)
    assert [t for t, _ in sent] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="positive"):
        RateLimits(global_per_s=0)


def test_forget_idle_drops_state_that_no_longer_binds():
    planner = RatePlanner()
    for chat in range(100):
        planner.try_acquire(chat, 0.0 + chat * 0.04)
    planner.forget_idle(100.0)
    assert planner._last_send == {}
    assert planner._groups == {}


# --- catch-up allowance (global_burst) ---------------------------------------------------------

BURST = RateLimits(global_burst=3)


def paced(planner: RatePlanner, count: int, lateness_s: list[float]) -> list[float]:
    """One chat per message, a sender that sleeps each wait and wakes `lateness_s[i]` late."""
    now = 0.0
    times: list[float] = []
    for chat_id in range(1, count + 1):
        while (wait := planner.try_acquire(chat_id, now)) > 0:
            now += wait + lateness_s[len(times) % len(lateness_s)]
        times.append(now)
    return times


def test_late_wake_ups_do_not_add_up_with_a_burst_allowance():
    late = [0.002, 0.0, 0.005, 0.001, 0.02]  # up to 20 ms, as on a loaded machine
    strict = paced(RatePlanner(), 600, late)
    caught_up = paced(RatePlanner(BURST), 600, late)
    # Paced from the last actual send, every late wake-up pushes all later slots back ...
    assert strict[-1] > 599 / 30 + 1.0
    # ... paced from the even schedule, lateness is caught up: never slower than 30/s.
    assert caught_up[-1] <= 599 / 30 + 0.02
    assert max_in_window(caught_up, 1.0 - 1e-9) <= 30 + 2


def bucket_conforms(times: list[float], rate: float, depth: int) -> bool:
    """A token bucket of `rate` per second holding `depth` admits every send: k sends in a row
    span at least (k - depth) / rate."""
    return all(
        times[j] - times[i] >= (j - i + 1 - depth) / rate - 1e-9
        for i in range(len(times))
        for j in range(i + depth, len(times))
    )


def test_burst_allowance_is_a_shallow_token_bucket_at_the_limit():
    planner = RatePlanner(BURST)
    times = [t for t, _ in drain(planner, list(range(1, 301)))]
    # At most `global_burst` at one instant, the backlog no slower than even spacing ...
    assert max(Counter(times).values()) == 3
    assert times[-1] <= 299 / 30
    # ... and never faster than 30/s beyond the burst: a bucket 3 deep admits it, 2 does not.
    assert bucket_conforms(times, 30.0, 3)
    assert not bucket_conforms(times, 30.0, 2)
    assert max_in_window(times, 1.0 - 1e-9) <= 32


def test_burst_sends_pass_the_sandbox_flood_control_even_with_network_jitter():
    """The sandbox's bucket (30/s, 30 deep) answers no 429 to the paced sends, arriving late."""
    rng = random.Random(4)
    flood = FloodControl(FloodLimits())
    late = [rng.uniform(0.0, 0.03) for _ in range(97)]
    sent = paced(RatePlanner(BURST), 900, late)
    arrivals = sorted((t + rng.uniform(0.0, 0.5), chat) for chat, t in enumerate(sent, 1))
    refused = [t for t, chat in arrivals if flood.check(1, chat, False, t) is not None]
    assert refused == []


def test_per_chat_and_group_limits_hold_with_a_burst_allowance():
    sent = drain(RatePlanner(BURST), [42] * 4 + [-100] * 22)
    to_chat = [t for t, chat in sent if chat == 42]
    to_group = [t for t, chat in sent if chat == -100]
    assert to_chat == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert max_in_window(to_group, 60.0) == 20


def test_global_wait_ignores_the_chats_own_limits():
    planner = RatePlanner(RateLimits(global_per_s=2, global_burst=1))
    assert planner.try_acquire(5, 0.0) == 0.0
    assert planner.global_wait_s(0.0) == pytest.approx(0.5)
    assert planner.wait_s(5, 0.5) == pytest.approx(0.5)  # the chat's 1/s
    assert planner.global_wait_s(0.5) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(30, 0), (30, 31), (2.5, 3), (0.5, 2)])
def test_a_burst_larger_than_one_second_of_sends_is_refused(rate: float, burst: int):
    with pytest.raises(ValueError, match="global_burst"):
        RateLimits(global_per_s=rate, global_burst=burst)


def test_a_chats_limits_count_from_the_answer_of_its_last_message():
    planner = RatePlanner()
    assert planner.try_acquire(7, 0.0) == 0.0
    planner.answered(7, 0.2)  # Telegram had it by then, not at the start
    assert planner.wait_s(7, 1.0) == pytest.approx(0.2)
    assert planner.try_acquire(7, 1.2) == 0.0
    planner.answered(7, 1.1)  # an answer time before the recorded one changes nothing
    assert planner.wait_s(7, 2.0) == pytest.approx(0.2)
    # The global pacing keeps the start time.
    assert planner.global_wait_s(1.2 + 1 / 30) == 0.0


def test_a_groups_minute_counts_from_the_answers():
    planner = RatePlanner()
    for n in range(20):
        assert planner.try_acquire(-100, n * 1.5) == 0.0
        planner.answered(-100, n * 1.5 + 0.3)
    # The first of the twenty was answered at 0.3 s: the 21st waits for 60.3 s.
    assert planner.wait_s(-100, 60.0) == pytest.approx(0.3)
    assert planner.try_acquire(-100, 60.3) == 0.0
