"""The runner on a fake clock: schedule, overrun, backoff, singleton standby, --once, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from runtime.errors import DatabaseUnavailable
from runtime.logging import configure_logging
from runtime.monitor import Monitor
from runtime.monitor.health import evaluate_health, read_health

# `harness` and `fake_clock` are fixtures of conftest.py.
Harness = Any
HarnessFactory = Callable[..., Harness]
Step = Callable[[Monitor], Awaitable[int]]


def ok(items: int = 1, duration_s: float = 0.0) -> Step:
    async def step(monitor: Monitor) -> int:
        monitor.ctx.clock.advance(duration_s)  # type: ignore[attr-defined]
        return items

    return step


def fail(exc: Exception | None = None, duration_s: float = 0.0) -> Step:
    async def step(monitor: Monitor) -> int:
        monitor.ctx.clock.advance(duration_s)  # type: ignore[attr-defined]
        raise exc if exc is not None else ValueError("tick exploded")

    return step


def sample(name: str, monitor: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"monitor": monitor, **labels}) or 0.0


async def test_ticks_on_the_interval_grid(harness: HarnessFactory) -> None:
    h = harness([ok(), ok(duration_s=3.0), ok(duration_s=9.9), ok()], interval_s=10.0)
    assert await h.run() == 0
    # The first tick runs at once; durations shorter than the interval do not shift the grid.
    assert h.relative_starts() == [0.0, 10.0, 20.0, 30.0]


async def test_overrun_skips_missed_slots_instead_of_bursting(harness: HarnessFactory) -> None:
    h = harness([ok(duration_s=25.0), ok(), ok()], interval_s=10.0)
    assert await h.run() == 0
    # The first tick ran until 25: slots 10 and 20 are skipped, the next runs at 30.
    assert h.relative_starts() == [0.0, 30.0, 40.0]
    assert sample("domos_monitor_ticks_total", h.name, outcome="skipped") == 2
    assert sample("domos_monitor_ticks_total", h.name, outcome="success") == 3


async def test_jitter_delays_each_slot_without_drifting_the_grid(harness: HarnessFactory) -> None:
    h = harness([ok(), ok(), ok()], interval_s=10.0, jitter_s=2.0, rand=lambda: 0.5)
    assert await h.run() == 0
    assert h.relative_starts() == [0.0, 11.0, 21.0]


async def test_failures_back_off_exponentially_then_success_resets(
    harness: HarnessFactory,
) -> None:
    h = harness(
        [fail(), fail(), fail(), ok(), ok()],
        interval_s=100.0,
        backoff_base_s=2.0,
        backoff_max_s=5.0,
    )
    assert await h.run() == 0
    # rand=0 with equal jitter: half of 2, 4, min(8, 5) -> retries 1, 2, 2.5 s after each failure;
    # after the success the ordinary interval applies again.
    assert h.relative_starts() == [0.0, 1.0, 3.0, 5.5, 105.5]
    assert sample("domos_monitor_ticks_total", h.name, outcome="failure") == 3
    assert sample("domos_monitor_consecutive_failures", h.name) == 0


async def test_success_metrics_and_health(harness: HarnessFactory) -> None:
    h = harness([ok(items=3, duration_s=0.5), ok(items=4)], interval_s=10.0)
    assert await h.run() == 0
    name = h.name
    assert sample("domos_monitor_items_processed_total", name) == 7
    assert sample("domos_monitor_tick_duration_seconds_count", name) == 2
    assert sample("domos_monitor_tick_duration_seconds_sum", name) == pytest.approx(0.5)
    assert sample("domos_monitor_last_success_timestamp_seconds", name) == h.clock.time()
    assert sample("domos_monitor_interval_seconds", name) == 10.0
    assert sample("domos_monitor_up", name) == 0  # stopped
    state = read_health(h.health_path)
    assert state is not None
    assert state.role == "stopped"
    assert state.ticks == 2
    assert state.last_success_at == h.clock.time()
    assert evaluate_health(state, now=h.clock.time() + 29, max_age_s=30).healthy


async def test_a_long_tick_reports_progress_to_health_and_metrics(
    harness: HarnessFactory,
) -> None:
    seen: list[tuple[bool, str]] = []

    async def drain(monitor: Monitor) -> int:
        # 100 s of work at Telegram's pace, an item every 2 s, against a 30 s health age.
        for _ in range(50):
            monitor.ctx.clock.advance(2.0)  # type: ignore[attr-defined]
            monitor.ctx.progress()
            verdict = evaluate_health(
                read_health(h.health_path), now=monitor.ctx.clock.time(), max_age_s=30
            )
            seen.append((verdict.healthy, verdict.reason))
        return 50

    async def hang(monitor: Monitor) -> int:
        monitor.ctx.clock.advance(40.0)  # type: ignore[attr-defined]
        verdict = evaluate_health(
            read_health(h.health_path), now=monitor.ctx.clock.time(), max_age_s=30
        )
        seen.append((verdict.healthy, verdict.reason))
        return 0

    h = harness([ok(), drain, hang], interval_s=1.0)
    assert await h.run() == 0
    assert all(healthy for healthy, _ in seen[:-1]), seen
    assert "tick in flight for 100.0 s" in seen[-2][1]
    assert seen[-1] == (False, "tick in flight for 40.0 s with no progress for 40.0 s (> 30 s)")
    assert sample("domos_monitor_last_progress_timestamp_seconds", h.name) == h.clock.time()
    state = read_health(h.health_path)
    assert state is not None
    assert (state.tick_started_at, state.progress_at) == (None, None)  # cleared after the tick


async def test_failure_is_recorded_in_health_without_secrets(harness: HarnessFactory) -> None:
    boom = DatabaseUnavailable("cannot reach postgresql://app:hunter2@db:5432/domos")
    h = harness([fail(boom)], interval_s=10.0)
    assert await h.run() == 0
    state = read_health(h.health_path)
    assert state is not None
    assert state.consecutive_failures == 1
    assert state.last_success_at is None
    assert state.last_error is not None
    assert "DatabaseUnavailable" in state.last_error
    assert "hunter2" not in state.last_error


@pytest.mark.parametrize("bad", [None, -1, True, "3", 2.5])
async def test_tick_must_return_a_count(harness: HarnessFactory, bad: object) -> None:
    async def wrong(monitor: Monitor) -> Any:
        return bad

    h = harness([wrong])
    assert await h.run() == 0
    state = read_health(h.health_path)
    assert state is not None
    assert state.last_error is not None
    assert "non-negative int" in state.last_error


async def test_once_runs_one_tick(harness: HarnessFactory) -> None:
    h = harness([ok(items=2)], once=True, stop_when_done=False)
    assert await h.run() == 0
    assert len(h.starts) == 1
    assert h.db.attempts == 1  # singleton: took the lock for its tick


async def test_once_fails_when_the_tick_fails(harness: HarnessFactory) -> None:
    h = harness([fail()], once=True, stop_when_done=False)
    assert await h.run() == 1
    # The health file belongs to the long-running instance: a failed --once leaves it alone.
    assert read_health(h.health_path) is None


async def test_once_records_only_its_success_in_the_health_file(
    harness: HarnessFactory,
) -> None:
    h = harness([ok()], once=True, stop_when_done=False)
    assert await h.run() == 0
    state = read_health(h.health_path)
    assert state is not None
    assert state.last_success_at == h.clock.time()
    assert state.role == "leader"


async def test_once_fails_when_the_singleton_lock_is_held(
    harness: HarnessFactory, fake_db_factory: Callable[..., Any]
) -> None:
    h = harness([ok()], once=True, db=fake_db_factory(held_for=1), stop_when_done=False)
    assert await h.run() == 1
    assert h.starts == []


async def test_singleton_stands_by_until_the_lock_is_free(
    harness: HarnessFactory, fake_db_factory: Callable[..., Any]
) -> None:
    db = fake_db_factory(held_for=3)
    h = harness([ok(), ok()], interval_s=10.0, db=db, lock_retry_s=4.0)
    assert await h.run() == 0
    # Three refused attempts, 4 s apart, then the lock: ticks start at 12 s.
    assert db.attempts == 4
    assert h.relative_starts() == [12.0, 22.0]


async def test_singleton_never_ticks_while_the_lock_is_held_elsewhere(
    harness: HarnessFactory, fake_db_factory: Callable[..., Any]
) -> None:
    db = fake_db_factory(held_for=10**9)
    h = harness([ok()], interval_s=10.0, db=db, lock_retry_s=1.0)
    original_wait = h.clock.wait
    standby_states: list[str] = []

    async def wait_then_stop(event: Any, timeout_s: float) -> bool:
        state = read_health(h.health_path)
        standby_states.append(state.role if state else "none")
        if db.attempts >= 5:
            h.runner.request_stop("test")
        return await original_wait(event, timeout_s)

    h.clock.wait = wait_then_stop
    assert await h.run() == 0
    assert h.starts == []
    assert db.attempts == 5
    assert set(standby_states) == {"standby"}
    assert sample("domos_monitor_leader", h.name) == 0


async def test_singleton_retries_when_the_database_is_down(
    harness: HarnessFactory, fake_db_factory: Callable[..., Any]
) -> None:
    db = fake_db_factory(held_for=2, error=DatabaseUnavailable("server closed the connection"))
    h = harness([ok()], interval_s=10.0, db=db, lock_retry_s=1.0)
    original_wait = h.clock.wait
    errors: list[str | None] = []

    async def wait_and_note(event: Any, timeout_s: float) -> bool:
        state = read_health(h.health_path)
        errors.append(state.last_error if state else None)
        return await original_wait(event, timeout_s)

    h.clock.wait = wait_and_note
    assert await h.run() == 0
    assert db.attempts == 3
    assert h.relative_starts() == [2.0]
    assert errors == ["DatabaseUnavailable: server closed the connection"] * 2


async def test_claiming_mode_never_takes_the_lock(
    harness: HarnessFactory, fake_db_factory: Callable[..., Any]
) -> None:
    db = fake_db_factory(held_for=10**9)
    h = harness([ok(), ok()], mode="claiming", db=db)
    assert await h.run() == 0
    assert db.attempts == 0
    assert len(h.starts) == 2


async def test_context_gives_owner_clock_and_stop_flag(harness: HarnessFactory) -> None:
    seen: dict[str, Any] = {}

    async def inspect_ctx(monitor: Monitor) -> int:
        seen["owner"] = monitor.ctx.owner
        seen["now"] = monitor.ctx.clock.now()
        seen["stop"] = monitor.ctx.stop_requested
        return 0

    h = harness([inspect_ctx])
    assert await h.run() == 0
    assert h.name in seen["owner"]
    assert seen["now"].tzinfo is not None
    assert seen["stop"] is True  # the last scripted step requested the stop before running


@pytest.mark.usefixtures("restore_logging")
async def test_logs_bind_monitor_and_tick_id(harness: HarnessFactory) -> None:
    stream = io.StringIO()
    configure_logging("debug", program="unit", stream=stream)

    async def log_inside(monitor: Monitor) -> int:
        monitor.log.info("work_done", rows=2)
        return 2

    h = harness([log_inside, fail()], interval_s=10.0)
    assert await h.run() == 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_event = {line["event"]: line for line in lines}
    work, succeeded, failed = (
        by_event["work_done"],
        by_event["tick_succeeded"],
        by_event["tick_failed"],
    )
    assert work["monitor"] == h.name
    assert work["program"] == "unit"
    assert work["tick_id"] == succeeded["tick_id"]
    assert failed["tick_id"] != succeeded["tick_id"]
    assert succeeded["items"] == 2
    assert "ValueError: tick exploded" in failed["exception"]
    assert by_event["monitor_started"]["monitor"] == h.name
    assert "tick_id" not in by_event["monitor_stopped"]


def test_subclass_validation() -> None:
    async def tick(self: Monitor) -> int:
        return 0

    with pytest.raises(TypeError, match="name"):
        type("NoName", (Monitor,), {"interval_s": 1.0, "tick": tick})
    with pytest.raises(TypeError, match="interval_s"):
        type("Zero", (Monitor,), {"name": "zero", "interval_s": 0, "tick": tick})
    with pytest.raises(TypeError, match="mode"):
        type("Mode", (Monitor,), {"name": "m", "interval_s": 1.0, "mode": "all", "tick": tick})
    with pytest.raises(TypeError, match="jitter"):
        type("J", (Monitor,), {"name": "j", "interval_s": 1.0, "jitter_s": 1.0, "tick": tick})
    # An abstract intermediate base (no tick) is not validated.
    assert type("Base", (Monitor,), {}).__name__ == "Base"


async def test_setup_and_teardown_wrap_the_ticks(harness: HarnessFactory) -> None:
    calls: list[str] = []

    async def setup(self: Monitor) -> None:
        calls.append("setup")

    async def teardown(self: Monitor) -> None:
        calls.append("teardown")

    async def record(monitor: Monitor) -> int:
        calls.append("tick")
        return 0

    h = harness([record, record], setup=setup, teardown=teardown)
    assert await h.run() == 0
    assert calls == ["setup", "tick", "tick", "teardown"]


async def test_a_failing_setup_stops_the_runner_without_teardown(harness: HarnessFactory) -> None:
    calls: list[str] = []

    async def setup(self: Monitor) -> None:
        raise OSError("no network")

    async def teardown(self: Monitor) -> None:
        calls.append("teardown")

    h = harness([ok()], setup=setup, teardown=teardown)
    with pytest.raises(OSError, match="no network"):
        await h.run()
    assert h.starts == []
    assert calls == []
    assert sample("domos_monitor_up", h.name) == 0


async def test_singleton_stops_ticking_when_its_lock_is_lost_and_stands_by(
    harness: HarnessFactory, fake_db_factory: Callable[..., Any]
) -> None:
    # The lock is reported lost at the third check: two ticks, then back to taking the lock.
    db = fake_db_factory(lost_after_checks=3)
    h = harness([ok(), ok(), ok()], interval_s=10.0, db=db, lock_retry_s=4.0)
    assert await h.run() == 0
    assert db.attempts == 2
    # Ticks at 0 and 10; the check before the 20 s tick fails; the lock is taken again 4 s
    # later and the third tick runs at once.
    assert h.relative_starts() == [0.0, 10.0, 24.0]


def test_a_monitor_refuses_settings_of_another_type() -> None:
    from dataclasses import dataclass

    from runtime.monitor import Monitor, MonitorContext

    @dataclass(frozen=True)
    class Wanted:
        @classmethod
        def from_env(cls, environ: object, settings: object) -> Wanted:
            return cls()

    class Picky(Monitor):
        name = "picky"
        interval_s = 1.0
        config_type = Wanted

        async def tick(self) -> int:
            return 0

    ctx = MonitorContext(
        settings=None,  # type: ignore[arg-type]
        db=None,  # type: ignore[arg-type]
        log=None,  # type: ignore[arg-type]
        clock=None,  # type: ignore[arg-type]
        owner="test",
        stop_event=asyncio.Event(),
    )
    with pytest.raises(TypeError, match="expected Wanted"):
        Picky(ctx)
    assert isinstance(Picky(dataclasses.replace(ctx, config=Wanted())).config, Wanted)


async def test_heartbeats_are_throttled_but_a_change_of_outcome_is_written_at_once() -> None:
    from datetime import UTC, datetime, timedelta

    from runtime.monitor.heartbeat import MIN_INTERVAL_S, Heartbeat
    from tests.unit.monitor.conftest import FakeDatabase

    db = FakeDatabase()
    beat = Heartbeat(db, "pinger", "host:1:pinger:ab")
    at = datetime(2026, 12, 4, tzinfo=UTC)

    async def record(outcome: str, items: int, after_s: float, error: str | None = None) -> None:
        await beat.record(
            outcome=outcome,
            items=items,
            error=error,
            at=at + timedelta(seconds=after_s),
            monotonic=after_s,
        )

    await record("succeeded", 2, 0.0)  # the first: written
    await record("succeeded", 3, 1.0)  # same outcome, too soon: folded into the next
    await record("failed", 0, 2.0, "boom")  # a change: written at once
    await record("failed", 0, 3.0, "boom")
    await record("succeeded", 1, 3.0 + MIN_INTERVAL_S)
    written = [params for _, params in db.executed]
    assert [(p[4], p[6], p[5]) for p in written] == [
        ("succeeded", 2, None),
        ("failed", 3, "boom"),
        ("succeeded", 1, None),
    ]
    # The failed row keeps the last success (COALESCE in the upsert); a success sets it.
    assert written[1][3] == at + timedelta(seconds=1)
    assert written[2][3] == at + timedelta(seconds=3 + MIN_INTERVAL_S)
