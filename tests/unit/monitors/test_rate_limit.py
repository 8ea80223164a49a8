from __future__ import annotations

import itertools

import pytest

from monitors.decisions.rate_limit import RateLimits, RatePlanner


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
