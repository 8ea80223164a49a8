"""Health state: atomic file, verdict table, and `domos monitor NAME --check`."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.monitor.health import (
    HealthState,
    evaluate_health,
    health_path,
    read_health,
    write_health,
)

BASE = HealthState(
    monitor="m",
    pid=1,
    owner="h:1:m:x",
    interval_s=10.0,
    role="leader",
    started_at=1000.0,
    heartbeat_at=1000.0,
)


@pytest.mark.parametrize(
    ("changes", "now", "healthy", "reason"),
    [
        ({"last_success_at": 1100.0}, 1129.0, True, "last success 29.0 s ago"),
        ({"last_success_at": 1100.0}, 1130.0, True, "last success 30.0 s ago"),
        ({"last_success_at": 1100.0}, 1131.0, False, "> 30 s"),
        # A stopped monitor (or a finished --once) is judged by its last success too.
        ({"last_success_at": 1100.0, "role": "stopped"}, 1120.0, True, "last success"),
        # Failing since: the last success ages out.
        (
            {"last_success_at": 1000.0, "consecutive_failures": 4, "last_error": "X: y"},
            1050.0,
            False,
            "4 failures since; last error: X: y",
        ),
        # Just started, no tick finished yet: grace from the start.
        ({}, 1020.0, True, "no tick finished yet"),
        ({"role": "starting"}, 1040.0, False, "no successful tick yet"),
        ({"role": "stopped"}, 1001.0, False, "no successful tick yet (stopped)"),
        # A long tick in flight: healthy while it reports progress, whatever the last success.
        (
            {"last_success_at": 1000.0, "tick_started_at": 1010.0, "progress_at": 1090.0},
            1100.0,
            True,
            "tick in flight for 90.0 s, progress 10.0 s ago",
        ),
        (
            {"last_success_at": 1090.0, "tick_started_at": 1095.0, "progress_at": 1095.0},
            1126.0,
            False,
            "no progress for 31.0 s",
        ),
        # A hung tick without any progress report is judged from its start.
        ({"last_success_at": 1099.0, "tick_started_at": 1100.0}, 1120.0, True, "in flight"),
        ({"last_success_at": 1099.0, "tick_started_at": 1100.0}, 1131.0, False, "no progress"),
        # A standby singleton is healthy while it keeps retrying the lock.
        ({"role": "standby", "heartbeat_at": 1500.0}, 1510.0, True, "standby"),
        ({"role": "standby", "heartbeat_at": 1500.0}, 1600.0, False, "standby heartbeat"),
    ],
)
def test_evaluate_health(
    changes: dict[str, object], now: float, healthy: bool, reason: str
) -> None:
    verdict = evaluate_health(replace(BASE, **changes), now=now, max_age_s=30.0)  # type: ignore[arg-type]
    assert verdict.healthy is healthy
    assert reason in verdict.reason


def test_no_state_is_unhealthy() -> None:
    verdict = evaluate_health(None, now=0.0, max_age_s=30.0)
    assert not verdict.healthy


def test_write_read_round_trip_and_no_temporary_left(tmp_path: Path) -> None:
    path = health_path(tmp_path / "run", "m")
    state = replace(BASE, last_success_at=1234.5, last_error="boom", ticks=3)
    write_health(path, state)
    write_health(path, replace(state, ticks=4))
    assert read_health(path) == replace(state, ticks=4)
    assert os.listdir(path.parent) == ["monitor-m.json"]


def test_corrupt_or_missing_file_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "monitor-m.json"
    assert read_health(path) is None
    path.write_text("{not json")
    assert read_health(path) is None
    path.write_text('{"monitor": "m"}')  # missing fields
    assert read_health(path) is None


def test_unknown_fields_from_a_newer_version_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "monitor-m.json"
    path.write_text(BASE.to_json()[:-1] + ', "future_field": 1}')
    assert read_health(path) == BASE


def test_check_command_reads_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.cli import main

    package = tmp_path / "pkg_health_check"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "beat.py").write_text(
        "from runtime.monitor import Monitor\n"
        "class Beat(Monitor):\n"
        "    name = 'beat'\n"
        "    interval_s = 10.0\n"
        "    async def tick(self) -> int:\n"
        "        return 0\n"
        "MONITOR = Beat\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DOMOS_MONITOR_PACKAGE", "pkg_health_check")
    monkeypatch.setenv("DOMOS_RUN_DIR", str(tmp_path / "run"))
    path = health_path(tmp_path / "run", "beat")

    assert main(["monitor", "beat", "--check"]) == 1
    assert "unhealthy: no health state" in capsys.readouterr().out

    now = time.time()
    write_health(path, replace(BASE, monitor="beat", last_success_at=now - 5))
    assert main(["monitor", "beat", "--check"]) == 0
    assert "beat: healthy" in capsys.readouterr().out

    write_health(path, replace(BASE, monitor="beat", last_success_at=now - 31))
    assert main(["monitor", "beat", "--check"]) == 1
    assert main(["monitor", "beat", "--check", "--max-age-intervals", "4"]) == 0
