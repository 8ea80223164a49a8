"""The backup schedule: when runs are due, failures retried sooner, stop between runs."""

from __future__ import annotations

import threading

import pytest

from runtime.backup.schedule import BackupJob, next_run_at, run_once, run_schedule
from runtime.backup.sqlite import BackupError


@pytest.mark.parametrize(
    ("started_at", "succeeded", "every_s", "retry_s", "expected"),
    [
        (100.0, True, 3600.0, 600.0, 3700.0),  # one interval after the previous start
        (100.0, False, 3600.0, 600.0, 700.0),  # failed: retried sooner
        (100.0, False, 60.0, 600.0, 160.0),  # ... but never later than the regular schedule
    ],
)
def test_next_run_at(started_at, succeeded, every_s, retry_s, expected):
    assert next_run_at(started_at, succeeded, every_s=every_s, retry_s=retry_s) == expected


def test_a_failing_job_does_not_stop_the_others():
    ran = []

    def broken() -> None:
        ran.append("postgres")
        raise BackupError("pg_dump failed")

    assert (
        run_once([BackupJob("postgres", broken), BackupJob("sqlite", lambda: ran.append("sqlite"))])
        is False
    )
    assert ran == ["postgres", "sqlite"]


def test_schedule_waits_between_rounds_and_stops_when_told():
    stop = threading.Event()
    rounds = []
    now = [0.0]

    def clock() -> float:
        return now[0]

    def job() -> None:
        rounds.append(now[0])
        now[0] += 10.0  # a backup takes 10 s of the fake clock
        if len(rounds) == 3:
            stop.set()

    waits = []
    real_wait = stop.wait

    def wait(timeout: float | None = None) -> bool:
        waits.append(timeout)
        now[0] += timeout or 0.0
        return real_wait(0)

    stop.wait = wait  # type: ignore[method-assign]
    assert (
        run_schedule([BackupJob("sqlite", job)], every_s=60.0, retry_s=5.0, stop=stop, clock=clock)
        == 3
    )
    assert rounds == [0.0, 60.0, 120.0]
    assert waits == [50.0, 50.0, 50.0]


def test_a_backup_directory_gone_read_only_fails_the_run_not_the_schedule():
    """Found from outside: an OSError (read-only volume) ended `domos backup schedule` with a
    traceback: no backup_failed line, no failed run counted, and the program restarting."""

    def read_only() -> None:
        raise OSError(30, "Read-only file system")

    ran: list[str] = []
    assert not run_once(
        [BackupJob("sqlite", read_only), BackupJob("postgres", lambda: ran.append("pg"))]
    )
    assert ran == ["pg"]
