"""Graceful stop on the real clock: the tick in flight finishes, or is cancelled at the deadline."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from runtime.config import Settings
from runtime.monitor import Monitor
from runtime.monitor.health import read_health
from runtime.monitor.runner import MonitorRunner
from tests.unit.monitor.conftest import FakeDatabase


class TickLog(list[str]):
    """What the ticks did, plus an event set when the first tick started."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()


def slow_monitor(name: str, tick_s: float, log: TickLog) -> type[Monitor]:
    async def tick(self: Monitor) -> int:
        log.append("started")
        log.started.set()
        await asyncio.sleep(tick_s)
        log.append("finished")
        return 1

    attrs = {"name": name, "interval_s": 60.0, "mode": "claiming", "tick": tick}
    return type("SlowMonitor", (Monitor,), attrs)


async def start(runner: MonitorRunner, log: TickLog) -> asyncio.Task[int]:
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(log.started.wait(), 5)
    return task


async def test_stop_lets_the_tick_in_flight_finish(
    settings: Settings, tmp_path: Path, unique: Any
) -> None:
    log = TickLog()
    runner = MonitorRunner(
        slow_monitor(unique(), 0.3, log), settings=settings, db=FakeDatabase(), stop_timeout_s=5.0
    )
    task = await start(runner, log)
    runner.request_stop("SIGTERM")
    assert await asyncio.wait_for(task, 5) == 0
    assert log == ["started", "finished"]


async def test_stop_cancels_the_tick_past_the_deadline(
    settings: Settings, tmp_path: Path, unique: Any
) -> None:
    log = TickLog()
    path = tmp_path / "health.json"
    runner = MonitorRunner(
        slow_monitor(unique(), 30.0, log),
        settings=settings,
        db=FakeDatabase(),
        stop_timeout_s=0.2,
        health_path=path,
    )
    task = await start(runner, log)
    began = time.monotonic()
    runner.request_stop("SIGTERM")
    assert await asyncio.wait_for(task, 5) == 1
    assert 0.15 < time.monotonic() - began < 2.0
    assert log == ["started"]
    state = read_health(path)
    assert state is not None
    assert state.last_error == "cancelled at the stop deadline"


async def test_a_second_stop_request_cancels_at_once(
    settings: Settings, tmp_path: Path, unique: Any
) -> None:
    log = TickLog()
    runner = MonitorRunner(
        slow_monitor(unique(), 30.0, log), settings=settings, db=FakeDatabase(), stop_timeout_s=60.0
    )
    task = await start(runner, log)
    began = time.monotonic()
    runner.request_stop("SIGTERM")
    await asyncio.sleep(0.05)
    assert not task.done()
    runner.request_stop("SIGINT")
    assert await asyncio.wait_for(task, 5) == 1
    assert time.monotonic() - began < 2.0


async def test_stop_between_ticks_returns_promptly(
    settings: Settings, tmp_path: Path, unique: Any
) -> None:
    log = TickLog()
    runner = MonitorRunner(slow_monitor(unique(), 0.0, log), settings=settings, db=FakeDatabase())
    task = await start(runner, log)
    await asyncio.sleep(0.05)  # now waiting for the next slot, 60 s away
    began = time.monotonic()
    runner.request_stop("SIGTERM")
    assert await asyncio.wait_for(task, 5) == 0
    assert time.monotonic() - began < 1.0
    assert log == ["started", "finished"]
