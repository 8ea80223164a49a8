"""`domos health`: the role's programs RUNNING in supervisord, its monitors healthy."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.monitor.health import HealthState, health_path, write_health
from runtime.observability.health import (
    check_monitors,
    check_processes,
    check_role,
    expected_programs,
    monitor_name,
)
from runtime.supervision.programs import LISTENER_NAME, by_name


def _info(name: str, state: str = "RUNNING") -> dict[str, object]:
    return {"name": name, "group": "monitors", "statename": state}


def _state(name: str, *, role: str = "leader", success_age_s: float | None = 1.0) -> HealthState:
    now = time.time()
    return HealthState(
        monitor=name,
        pid=1,
        owner="test",
        interval_s=10.0,
        role=role,  # type: ignore[arg-type]
        started_at=now - 100,
        heartbeat_at=now,
        last_success_at=None if success_age_s is None else now - success_age_s,
    )


def test_monitor_name_comes_from_the_command():
    assert monitor_name(by_name()["notifymonitor"]) == "notifymonitor"
    assert monitor_name(by_name()["sandbox"]) is None


def test_every_program_of_the_role_and_the_listener_must_run():
    programs = [p.name for p in expected_programs("monitors")]
    assert programs
    processes = [_info(LISTENER_NAME), *(_info(name) for name in programs)]
    findings, running = check_processes("monitors", processes)
    assert all(f.healthy for f in findings)
    assert [p.name for p in running] == programs

    processes[1] = _info(programs[0], "BACKOFF")
    some = processes[:-1] if len(programs) > 1 else processes
    findings, running = check_processes("monitors", some)
    unhealthy = {f.name: f.reason for f in findings if not f.healthy}
    assert unhealthy[programs[0]] == "BACKOFF"
    if len(programs) > 1:
        assert unhealthy[programs[-1]] == "not known to supervisord"


def test_monitors_need_a_recent_success(tmp_path: Path):
    notify = by_name()["notifymonitor"]
    charges = by_name()["recurrent_payments"]
    write_health(health_path(tmp_path, "notifymonitor"), _state("notifymonitor"))
    write_health(
        health_path(tmp_path, "recurrent_payments"),
        _state("recurrent_payments", success_age_s=31.0),  # > 3 intervals of 10 s
    )
    findings = check_monitors([notify, charges, by_name()["sandbox"]], tmp_path, now=time.time())
    verdicts = {f.name: f.healthy for f in findings}
    assert verdicts == {"notifymonitor (monitor)": True, "recurrent_payments (monitor)": False}


def test_a_monitor_without_a_health_file_is_unhealthy(tmp_path: Path):
    [finding] = check_monitors([by_name()["notifymonitor"]], tmp_path, now=time.time())
    assert not finding.healthy
    assert "no health state" in finding.reason


def test_unknown_role_and_silent_supervisord_are_unhealthy(tmp_path: Path):
    [unknown] = check_role("nope", tmp_path / "supervisord.conf", tmp_path)
    assert not unknown.healthy
    assert "unknown role" in unknown.reason
    config = tmp_path / "supervisord.conf"
    config.write_text(f"[supervisorctl]\nserverurl=unix://{tmp_path}/absent.sock\n")
    [down] = check_role("monitors", config, tmp_path)
    assert down.name == "supervisord"
    assert not down.healthy


def test_health_command_needs_a_role(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.delenv("DOMOS_ROLE", raising=False)
    assert main(["health"]) == 78  # EX_CONFIG, as every ConfigError
    assert "DOMOS_ROLE" in capsys.readouterr().err


def test_an_http_service_is_healthy_only_once_it_accepts_connections():
    import dataclasses
    import socket

    from runtime.observability.health import check_services, probe_host

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        api = dataclasses.replace(by_name()["api"], metrics_port=port)
        [up] = check_services([api, by_name()["notifymonitor"]], "127.0.0.1")
        assert (up.name, up.healthy) == ("api (port)", True)
    # Closed now: what a RUNNING uvicorn still importing looks like from inside the container.
    [down] = check_services([api], "127.0.0.1")
    assert not down.healthy
    assert str(port) in down.reason
    assert probe_host("0.0.0.0") == probe_host("::") == "127.0.0.1"
    assert probe_host("10.0.0.5") == "10.0.0.5"
