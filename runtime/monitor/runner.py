"""The monitor runner: schedule, backoff, singleton leadership, graceful stop, health, metrics.

One runner drives one Monitor subclass in one process:

- ticks on the grid of `next_run` (interval plus jitter; an overrun skips the missed slots and
  counts them as `skipped`), the first tick right at start;
- after a failed tick, retries after `backoff_delay` (capped exponential with jitter) instead;
- `request_stop()` (SIGTERM/SIGINT): no new tick starts; the tick in flight gets `stop_timeout_s`
  to finish, then it is cancelled and the exit code is 1; a second request cancels at once;
- singleton mode: ticks only while holding `db.singleton_lock("monitor:<name>")`; otherwise it
  stands by and retries the lock every `lock_retry_s`;
- every tick runs with `tick_id` bound in the log context and updates metrics and health state;
- with `schema_databases`, nothing (not even `setup()`) runs before the database has every
  migration of the code: the runner waits, re-checking every `schema_recheck_s`, its health
  state `waiting_for_schema` (runtime.db.schema_gate); `once` gives up at once (exit 1).
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from runtime import metrics
from runtime.config import Settings
from runtime.db import schema_gate
from runtime.db.base import HeldLock
from runtime.errors import DatabaseError, LockNotAcquired, MonitorError
from runtime.logging import scrub_text
from runtime.monitor.base import Monitor, MonitorContext, NoConfig
from runtime.monitor.clock import Clock, SystemClock
from runtime.monitor.health import HealthRecorder, HealthState
from runtime.monitor.heartbeat import Heartbeat
from runtime.monitor.schedule import (
    backoff_delay,
    jitter_offset,
    jitter_spread,
    missed_slots,
    next_run,
)

EXIT_OK = 0
#: A tick failed under --once, the in-flight tick was cancelled at the stop deadline, or the
#: singleton lock was held elsewhere under --once.
EXIT_FAILED = 1


def make_owner_id(monitor: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{monitor}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class TickResult:
    ok: bool
    items: int = 0
    cancelled: bool = False


class MonitorRunner:
    def __init__(
        self,
        monitor_cls: type[Monitor],
        *,
        settings: Settings,
        db: Any,
        config: object | None = None,
        clock: Clock | None = None,
        health_path: Path | None = None,
        once: bool = False,
        stop_timeout_s: float | None = None,
        rand: Callable[[], float] = random.random,
        schema_databases: Sequence[str] = (),
        schema_recheck_s: float = schema_gate.DEFAULT_RECHECK_S,
    ) -> None:
        self.monitor_cls = monitor_cls
        self.name = monitor_cls.name
        self.settings = settings
        #: `build_config(monitor_cls, environ, settings)`; None for a monitor without settings.
        self.config = NoConfig() if config is None else config
        self.db = db
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.once = once
        self.stop_timeout_s = (
            monitor_cls.stop_timeout_s if stop_timeout_s is None else stop_timeout_s
        )
        self.owner = make_owner_id(self.name)
        #: The logical databases whose migrations must all be applied before any work.
        self.schema_databases = tuple(schema_databases)
        self.schema_recheck_s = schema_recheck_s
        self.heartbeat = Heartbeat(db, self.name, self.owner)
        self._rand = rand
        self._stop = asyncio.Event()
        self._tick_task: asyncio.Task[TickResult] | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._cancelled_at_deadline = False
        self._failures = 0
        self._exit_code = EXIT_OK
        self.log: structlog.stdlib.BoundLogger = structlog.get_logger("runtime.monitor").bind(
            monitor=self.name
        )
        started = self.clock.time()
        self.health = HealthRecorder(
            health_path,
            HealthState(
                monitor=self.name,
                pid=os.getpid(),
                owner=self.owner,
                interval_s=monitor_cls.interval_s,
                role="starting",
                started_at=started,
                heartbeat_at=started,
            ),
        )

    # --- stopping ---------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, reason: str = "requested") -> None:
        """Stop after the tick in flight; a second request while it runs cancels it now."""
        task = self._tick_task
        in_flight = task is not None and not task.done()
        if self._stop.is_set():
            if in_flight:
                self.log.warning("tick_cancel_forced", reason=reason)
                self._cancel_tick()
            return
        self._stop.set()
        self.log.info(
            "monitor_stopping",
            reason=reason,
            tick_in_flight=in_flight,
            stop_timeout_s=self.stop_timeout_s,
        )
        if in_flight:
            loop = asyncio.get_running_loop()
            self._deadline = loop.call_later(self.stop_timeout_s, self._cancel_tick)

    def _cancel_tick(self) -> None:
        task = self._tick_task
        if task is not None and not task.done():
            self._cancelled_at_deadline = True
            task.cancel()

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (or one tick with `once`); returns the process exit code."""
        with structlog.contextvars.bound_contextvars(monitor=self.name):
            metrics.init_monitor_series(self.name, self.monitor_cls.interval_s)
            ctx = MonitorContext(
                settings=self.settings,
                db=self.db,
                log=structlog.get_logger(f"monitors.{self.name}").bind(monitor=self.name),
                clock=self.clock,
                owner=self.owner,
                stop_event=self._stop,
                progress=self._progress,
                config=self.config,
            )
            monitor = self.monitor_cls(ctx)
            self._write_health(role="starting")
            self.log.info(
                "monitor_started",
                mode=self.monitor_cls.mode,
                interval_s=self.monitor_cls.interval_s,
                once=self.once,
                owner=self.owner,
            )
            set_up = False
            try:
                if not await self._schema_ready():
                    return self._exit_code
                await monitor.setup()
                set_up = True
                if self.monitor_cls.mode == "singleton":
                    await self._run_as_singleton(monitor)
                else:
                    await self._run_as_leader(monitor)
            finally:
                if self._deadline is not None:
                    self._deadline.cancel()
                if set_up:
                    await monitor.teardown()
                metrics.MONITOR_LEADER.labels(monitor=self.name).set(0)
                metrics.MONITOR_UP.labels(monitor=self.name).set(0)
                self._write_health(role="stopped")
                self.log.info("monitor_stopped", exit_code=self._exit_code)
            return self._exit_code

    async def _schema_ready(self) -> bool:
        """Whether to go on: the schema has the code's migrations (runtime.db.schema_gate)."""
        if not self.schema_databases:
            return True
        if self.once:
            try:
                verdict = await schema_gate.check(self.db, self.schema_databases)
            except DatabaseError as exc:
                self.log.error("schema_check_failed", error=str(exc))
                self._exit_code = EXIT_FAILED
                return False
            schema_gate.export(verdict)
            if verdict.behind:
                schema_gate.report_behind(verdict, recheck_s=None)
                self._exit_code = EXIT_FAILED
                return False
            schema_gate.report_ready(verdict)
            return True
        waited = await schema_gate.wait_for_schema(
            self.db,
            stop=self._stop,
            recheck_s=self.schema_recheck_s,
            logical_dbs=self.schema_databases,
            on_wait=lambda reason: self._write_health(role="waiting_for_schema", last_error=reason),
        )
        if waited is not None:
            self._write_health(role="starting", last_error=None)
        return waited is not None

    async def _run_as_singleton(self, monitor: Monitor) -> None:
        lock_name = f"monitor:{self.name}"
        retry_s = self.monitor_cls.effective_lock_retry_s()
        standing_by = False
        while not self.stopping:
            try:
                async with self.db.singleton_lock(lock_name) as lock:
                    self.log.info("singleton_lock_acquired", lock=lock_name)
                    standing_by = False
                    await self._run_as_leader(monitor, lock)
                    return
            except LockNotAcquired:
                if self.once:
                    self.log.error("singleton_lock_held_elsewhere", lock=lock_name)
                    self._exit_code = EXIT_FAILED
                    return
                if not standing_by:  # once per stretch of standing by, not every retry
                    self.log.info("singleton_standby", lock=lock_name, retry_s=retry_s)
                    standing_by = True
                self._write_health(role="standby")
            except DatabaseError as exc:
                # The lock could not even be tried (database down) or was lost on release.
                self.log.warning("singleton_lock_failed", lock=lock_name, error=str(exc))
                if self.once:
                    self._exit_code = EXIT_FAILED
                    return
                error = scrub_text(f"{type(exc).__name__}: {exc}")[:500]
                self._write_health(role="standby", last_error=error)
            finally:
                metrics.MONITOR_LEADER.labels(monitor=self.name).set(0)
            await self.clock.wait(self._stop, retry_s)

    async def _run_as_leader(self, monitor: Monitor, lock: HeldLock | None = None) -> None:
        metrics.MONITOR_LEADER.labels(monitor=self.name).set(1)
        self._write_health(role="leader")
        if self.once:
            result = await self._run_tick(monitor)
            if not result.ok:
                self._exit_code = EXIT_FAILED
            return
        await self._tick_loop(monitor, lock)

    async def _tick_loop(self, monitor: Monitor, lock: HeldLock | None = None) -> None:
        cls = self.monitor_cls
        spread = jitter_spread(cls.interval_s, jitter_s=cls.jitter_s, jitter_ratio=cls.jitter_ratio)
        slot = self.clock.monotonic()
        run_at = slot  # the first tick runs at once
        while True:
            delay = run_at - self.clock.monotonic()
            if delay > 0:
                await self.clock.wait(self._stop, delay)
            if self.stopping:
                return
            if lock is not None:
                # A singleton whose lock session died must not tick beside the new holder.
                try:
                    await lock.ensure_held()
                except LockNotAcquired:
                    self.log.warning("singleton_lock_lost", lock=lock.name)
                    raise
            result = await self._run_tick(monitor)
            if self.stopping:
                return
            now = self.clock.monotonic()
            if result.ok:
                skipped = missed_slots(slot, cls.interval_s, now)
                if skipped:
                    metrics.MONITOR_TICKS.labels(monitor=self.name, outcome="skipped").inc(skipped)
                    self.log.warning("tick_overran", skipped_slots=skipped)
                slot = next_run(slot, cls.interval_s, now)
                run_at = slot + jitter_offset(spread, self._rand())
            else:
                retry_in = backoff_delay(
                    self._failures,
                    base_s=cls.backoff_base_s,
                    max_s=cls.backoff_max_s,
                    rand=self._rand(),
                )
                self.log.info(
                    "tick_backoff", retry_in_s=round(retry_in, 3), failures=self._failures
                )
                slot = run_at = now + retry_in

    async def _run_tick(self, monitor: Monitor) -> TickResult:
        task = asyncio.create_task(self._tick(monitor), name=f"monitor:{self.name}:tick")
        self._tick_task = task
        try:
            return await task
        finally:
            self._tick_task = None
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

    async def _tick(self, monitor: Monitor) -> TickResult:
        tick_id = uuid.uuid4().hex[:12]
        structlog.contextvars.bind_contextvars(tick_id=tick_id)
        name = self.name
        started = self.clock.monotonic()
        self.log.debug("tick_started")
        self._write_health(tick_started_at=self.clock.time(), progress_at=None)
        try:
            items = await monitor.tick()
            if isinstance(items, bool) or not isinstance(items, int) or items < 0:
                raise MonitorError(f"{name}.tick() must return a non-negative int, got {items!r}")
        except asyncio.CancelledError:
            if not self._cancelled_at_deadline:
                raise
            duration = self.clock.monotonic() - started
            self._record_failure(duration, "cancelled at the stop deadline")
            self.log.error(
                "tick_cancelled", duration_s=round(duration, 6), stop_timeout_s=self.stop_timeout_s
            )
            self._exit_code = EXIT_FAILED
            return TickResult(ok=False, cancelled=True)
        except Exception as exc:
            duration = self.clock.monotonic() - started
            error = f"{type(exc).__name__}: {exc}"
            self._record_failure(duration, error)
            self.log.error(
                "tick_failed",
                duration_s=round(duration, 6),
                consecutive_failures=self._failures,
                exc_info=exc,
            )
            await self._beat("failed", 0, scrub_text(error)[:500])
            return TickResult(ok=False)
        duration = self.clock.monotonic() - started
        self._record_success(duration, items)
        await self._beat("succeeded", items, None)
        log_method = self.log.info if items else self.log.debug
        log_method("tick_succeeded", items=items, duration_s=round(duration, 6))
        return TickResult(ok=True, items=items)

    # --- bookkeeping ------------------------------------------------------------------------

    def _record_success(self, duration_s: float, items: int) -> None:
        name = self.name
        finished = self.clock.time()
        self._failures = 0
        metrics.MONITOR_TICKS.labels(monitor=name, outcome="success").inc()
        metrics.MONITOR_TICK_DURATION.labels(monitor=name).observe(duration_s)
        metrics.MONITOR_ITEMS_PROCESSED.labels(monitor=name).inc(items)
        metrics.MONITOR_LAST_SUCCESS.labels(monitor=name).set(finished)
        metrics.MONITOR_LAST_PROGRESS.labels(monitor=name).set(finished)
        metrics.MONITOR_CONSECUTIVE_FAILURES.labels(monitor=name).set(0)
        self._write_health(
            role="leader",
            last_success_at=finished,
            consecutive_failures=0,
            ticks=self.health.state.ticks + 1,
            tick_started_at=None,
            progress_at=None,
        )

    def _record_failure(self, duration_s: float, error: str) -> None:
        name = self.name
        self._failures += 1
        metrics.MONITOR_TICKS.labels(monitor=name, outcome="failure").inc()
        metrics.MONITOR_TICK_DURATION.labels(monitor=name).observe(duration_s)
        metrics.MONITOR_CONSECUTIVE_FAILURES.labels(monitor=name).set(self._failures)
        self._write_health(
            role="leader",
            last_failure_at=self.clock.time(),
            consecutive_failures=self._failures,
            last_error=scrub_text(error)[:500],
            ticks=self.health.state.ticks + 1,
            tick_started_at=None,
            progress_at=None,
        )

    async def _beat(self, outcome: str, items: int, error: str | None) -> None:
        await self.heartbeat.record(
            outcome=outcome,
            items=items,
            error=error,
            at=self.clock.now(),
            monotonic=self.clock.monotonic(),
        )

    def _progress(self) -> None:
        """`ctx.progress()`: the metric at once, the health file at most once a second."""
        now = self.clock.time()
        metrics.MONITOR_LAST_PROGRESS.labels(monitor=self.name).set(now)
        written = self.health.state.progress_at or self.health.state.tick_started_at
        if self._tick_task is not None and (written is None or now - written >= 1.0):
            self._write_health(progress_at=now)

    def _write_health(self, **changes: object) -> None:
        if self.once and "last_success_at" not in changes:
            # A manual --once shares the run dir of the long-running instance: only a success
            # is news worth recording there; anything else would clobber that instance's state.
            return
        try:
            self.health.update(heartbeat_at=self.clock.time(), **changes)
        except OSError as exc:
            # The check will report the monitor unhealthy; ticking must not stop because of it.
            self.log.warning("health_write_failed", path=str(self.health.path), error=str(exc))
