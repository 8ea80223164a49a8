"""`domos backup schedule`: backups every N hours as a long-running, supervised program.

A run backs up every configured kind, then applies retention. The first run starts at once (a
restarted program makes a fresh backup rather than trusting an old one); the next is due one
interval after the previous one started, or right away when a run took longer than the interval.
A failed run is logged and retried after `retry_s` (never later than the regular schedule), so a
database that is down for a minute does not cost a whole interval. Each run is counted and its
success stamped (metrics on METRICS_PORT): DomosBackupStale and DomosBackupNeverSucceeded say
when backups stop. SIGTERM/SIGINT stop the wait
at once; a backup in flight is finished (its file is renamed into place only when complete).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import structlog
from prometheus_client import Counter, Gauge

from runtime.errors import DomosError

log = structlog.get_logger("domos.backup")

BACKUP_RUNS = Counter(
    "domos_backup_runs_total", "Scheduled backup runs, by kind and outcome.", ["kind", "outcome"]
)
BACKUP_LAST_SUCCESS = Gauge(
    "domos_backup_last_success_timestamp_seconds",
    "Unix time the last scheduled backup of this kind finished and passed its check.",
    ["kind"],
)
BACKUP_INTERVAL = Gauge(
    "domos_backup_interval_seconds", "How often the schedule backs up (--every-hours)."
)


@dataclass(frozen=True)
class BackupJob:
    kind: str  # sqlite | postgres
    run: Callable[[], object]


def next_run_at(started_at: float, succeeded: bool, *, every_s: float, retry_s: float) -> float:
    """When the next run is due, on the monotonic clock, after a run that began at started_at."""
    if succeeded:
        return started_at + every_s
    return started_at + min(retry_s, every_s)


def run_once(jobs: Sequence[BackupJob]) -> bool:
    """Every job once; a failing job does not stop the others. True when all succeeded."""
    ok = True
    for job in jobs:
        started = time.perf_counter()
        try:
            job.run()
        except (DomosError, OSError) as exc:
            # OSError: a backup directory read-only or gone; the schedule goes on, counts it
            # and alerts (DomosBackupStale), instead of exiting with a traceback.
            ok = False
            BACKUP_RUNS.labels(kind=job.kind, outcome="failed").inc()
            log.error("backup_failed", kind=job.kind, error=str(exc))
        else:
            BACKUP_RUNS.labels(kind=job.kind, outcome="succeeded").inc()
            BACKUP_LAST_SUCCESS.labels(kind=job.kind).set_to_current_time()
            log.info(
                "backup_succeeded",
                kind=job.kind,
                duration_s=round(time.perf_counter() - started, 3),
            )
    return ok


def run_schedule(
    jobs: Sequence[BackupJob],
    *,
    every_s: float,
    retry_s: float,
    stop: threading.Event,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run until `stop` is set; returns the number of completed rounds."""
    rounds = 0
    # Every series from the start: the alerts see a schedule that has not succeeded yet.
    BACKUP_INTERVAL.set(every_s)
    for job in jobs:
        for outcome in ("succeeded", "failed"):
            BACKUP_RUNS.labels(kind=job.kind, outcome=outcome)
    log.info("backup_schedule_started", kinds=[j.kind for j in jobs], every_s=every_s)
    while not stop.is_set():
        started = clock()
        succeeded = run_once(jobs)
        rounds += 1
        due = next_run_at(started, succeeded, every_s=every_s, retry_s=retry_s)
        log.info("backup_round_finished", succeeded=succeeded, next_in_s=round(due - clock(), 1))
        stop.wait(max(0.0, due - clock()))
    log.info("backup_schedule_stopped", rounds=rounds)
    return rounds


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM (supervisorctl stop, docker stop) and SIGINT end the wait between runs."""

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("backup_schedule_stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
