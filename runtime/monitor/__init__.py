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

`domos monitor tsmonitor` runs it until SIGTERM; `--once` runs one tick; `--check` exits 0 while
the last success is younger than 3 intervals (health file `$DOMOS_RUN_DIR/monitor-NAME.json`,
default var/run). `DOMOS_MONITOR_PACKAGE` (or `--package`) looks monitors up in another package,
which is how the tests run small monitors of their own. The runner gives each tick: interval with
jitter, skip-on-overrun, capped exponential backoff after failures, graceful stop within
`stop_timeout_s`, singleton lock or claiming mode, bound log context (`monitor`, `tick_id`),
metrics (`domos_monitor_*`) and the health file. See `runtime.monitor.runner`.
"""

from __future__ import annotations

from runtime.monitor.base import MONITOR_MODES, Monitor, MonitorContext, MonitorMode
from runtime.monitor.clock import Clock, SystemClock

__all__ = ["MONITOR_MODES", "Clock", "Monitor", "MonitorContext", "MonitorMode", "SystemClock"]
