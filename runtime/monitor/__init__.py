"""The monitor base: write a Monitor subclass, the runner does the rest.

Convention: monitor `NAME` lives in module `monitors.NAME` and exposes its class as `MONITOR`::

    # monitors/tsmonitor.py
    from runtime.monitor import Monitor

    class TermsMonitor(Monitor):
        name = "tsmonitor"
        interval_s = 60.0
        mode = "singleton"          # or "claiming": every replica ticks, work taken by db.claim()

        async def tick(self) -> int:
            rows = await self.db.fetchall("SELECT ...", (...,))
            ...
            return len(rows)        # items processed, for metrics and logs

    MONITOR = TermsMonitor

Settings of its own: a frozen dataclass with `from_env(environ, settings)` named as the class's
`config_type`; the runner builds it before the database opens (a bad value exits 78 naming the
variable) and the monitor reads it as `self.config`. No monitor reads `os.environ` itself.

`domos monitor tsmonitor` runs it until SIGTERM; `--once` runs one tick; `--check` exits 0 while
the last success is younger than 3 intervals (health file `$DOMOS_RUN_DIR/monitor-NAME.json`,
default var/run). `DOMOS_MONITOR_PACKAGE` (or `--package`) looks monitors up in another package,
which is how the tests run small monitors of their own. The runner gives each tick: interval with
jitter, skip-on-overrun, capped exponential backoff after failures, graceful stop within
`stop_timeout_s`, singleton lock or claiming mode, bound log context (`monitor`, `tick_id`),
metrics (`domos_monitor_*`) and the health file. See `runtime.monitor.runner`.

Operating it: SIGTERM or SIGINT stops it (exit 0 once the tick in flight finished; exit 1 if that
tick had to be cancelled after `stop_timeout_s`, default 30 s, or `--stop-timeout`; a second
signal cancels at once). So supervisord's `stopwaitsecs` (and Docker's stop grace period) must
exceed the stop timeout. A health check is `domos monitor NAME --check` (exit 0/1), run in the
same container as the monitor, because the health file is per container.
"""

from __future__ import annotations

from runtime.monitor.base import (
    MONITOR_MODES,
    Monitor,
    MonitorConfig,
    MonitorContext,
    MonitorMode,
    NoConfig,
    build_config,
)
from runtime.monitor.clock import Clock, SystemClock

__all__ = [
    "MONITOR_MODES",
    "Clock",
    "Monitor",
    "MonitorConfig",
    "MonitorContext",
    "MonitorMode",
    "NoConfig",
    "SystemClock",
    "build_config",
]
