"""A fake clock, a fake database and a scriptable monitor for runner unit tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db.base import HeldLock
from runtime.errors import LockNotAcquired
from runtime.monitor import Monitor
from runtime.monitor.runner import MonitorRunner


class FakeClock:
    """Virtual time: waiting advances it instantly, so schedules are exact and tests are fast."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self.mono = start
        self.wall_offset = wall_offset
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.mono + self.wall_offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        if event.is_set():
            return True
        self.waits.append(timeout_s)
        self.advance(max(0.0, timeout_s))
        await asyncio.sleep(0)
        return event.is_set()


class FakeDatabase:
    """Only what the runner touches: the singleton lock, held elsewhere `held_for` times, and
    `execute` (the heartbeat row)."""

    def __init__(
        self, held_for: int = 0, error: Exception | None = None, lost_after_checks: int = 0
    ) -> None:
        self.held_for = held_for
        self.error = error
        self.attempts = 0
        self.holding = False
        #: The held lock reports itself lost at this check (0: never).
        self.lost_after_checks = lost_after_checks
        self.checks = 0
        #: (sql, params) of every execute: the runner's heartbeat writes.
        self.executed: list[tuple[str, tuple[Any, ...]]] = []

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        self.executed.append((sql, params))
        return 1

    @asynccontextmanager
    async def singleton_lock(self, name: str) -> AsyncIterator[HeldLock]:
        self.attempts += 1
        if self.attempts <= self.held_for:
            raise self.error or LockNotAcquired(f"{name} is held by another process")
        self.holding = True
        database = self

        class _Lock(HeldLock):
            async def ensure_held(self) -> None:
                database.checks += 1
                if database.checks == database.lost_after_checks:
                    raise LockNotAcquired(f"{name} was lost")

        try:
            yield _Lock(name)
        finally:
            self.holding = False


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings.from_env({"DOMOS_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def fake_db_factory() -> type[FakeDatabase]:
    return FakeDatabase


@pytest.fixture
def unique() -> Callable[..., str]:
    """A fresh monitor name per call: metrics are process-global, names keep tests apart."""
    return unique_name


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


def unique_name(prefix: str = "unit") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


Step = Callable[[Monitor], Awaitable[int]]


@dataclass
class Harness:
    runner: MonitorRunner
    cls: type[Monitor]
    starts: list[float]
    clock: FakeClock
    db: FakeDatabase
    health_path: Path

    @property
    def name(self) -> str:
        return self.cls.name

    async def run(self) -> int:
        return await self.runner.run()

    def relative_starts(self, origin: float = 1000.0) -> list[float]:
        return [round(t - origin, 6) for t in self.starts]


@pytest.fixture
def harness(settings: Settings, fake_clock: FakeClock, tmp_path: Path) -> Callable[..., Harness]:
    """`harness(script, interval_s=10, mode=..., db=..., once=..., rand=..., **class_attrs)`.

    Tick i runs `script[i]`; the last step asks the runner to stop (the tick still completes).
    """

    def build(
        script: list[Step],
        *,
        interval_s: float = 10.0,
        mode: str = "singleton",
        db: FakeDatabase | None = None,
        once: bool = False,
        rand: Callable[[], float] = lambda: 0.0,
        stop_when_done: bool = True,
        **class_attrs: Any,
    ) -> Harness:
        starts: list[float] = []
        holder: dict[str, MonitorRunner] = {}

        async def tick(self: Monitor) -> int:
            starts.append(self.ctx.clock.monotonic())
            index = len(starts) - 1
            if stop_when_done and index >= len(script) - 1:
                holder["runner"].request_stop("script_done")
            return await script[index](self)

        attrs = {
            "name": unique_name(),
            "interval_s": interval_s,
            "mode": mode,
            "jitter_ratio": 0.0,
            "tick": tick,
            **class_attrs,
        }
        cls = type("ScriptedMonitor", (Monitor,), attrs)
        fake_db = db if db is not None else FakeDatabase()
        path = tmp_path / "run" / f"monitor-{attrs['name']}.json"
        runner = MonitorRunner(
            cls,
            settings=settings,
            db=fake_db,
            clock=fake_clock,
            health_path=path,
            once=once,
            rand=rand,
        )
        holder["runner"] = runner
        return Harness(runner, cls, starts, fake_clock, fake_db, path)

    return build
