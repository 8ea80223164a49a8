from __future__ import annotations

import io
import xmlrpc.client
from typing import Any

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from runtime.errors import EX_CONFIG
from runtime.supervision.listener import (
    ConfigErrorWatch,
    FatalWatch,
    ProcessStateTracker,
    listen,
    parse_headers,
)


class RecordingRpc:
    """Answers like supervisord's XML-RPC `supervisor` namespace, and records shutdowns."""

    def __init__(self, processes: list[dict[str, Any]]) -> None:
        self.processes = processes
        self.shutdowns = 0

    def getAllProcessInfo(self) -> list[dict[str, Any]]:
        return self.processes

    def shutdown(self) -> bool:
        self.shutdowns += 1
        return True


def _event(name: str, payload: str) -> str:
    header = f"ver:3.0 server:supervisor serial:1 pool:x poolserial:1 eventname:{name}"
    return f"{header} len:{len(payload)}\n{payload}"


def _info(name: str, state: str, start: int = 100, now: int = 160) -> dict[str, Any]:
    return {"name": name, "group": "monitors", "statename": state, "start": start, "now": now}


def _sample(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def test_parse_headers():
    assert parse_headers("ver:3.0 eventname:TICK_5 len:15\n") == {
        "ver": "3.0",
        "eventname": "TICK_5",
        "len": "15",
    }


def test_fatal_asks_supervisord_to_shut_down_and_speaks_the_protocol():
    rpc = RecordingRpc([_info("lt_fatal", "FATAL")])
    stdin = io.StringIO(
        _event("PROCESS_STATE_FATAL", "processname:lt_fatal groupname:monitors from_state:BACKOFF")
    )
    stdout = io.StringIO()
    listen(rpc, stdin=stdin, stdout=stdout)
    assert rpc.shutdowns == 1
    # READY, the result for the one event, READY again, then EOF ends the loop.
    assert stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    assert (
        _sample(
            "domos_supervisor_process_state", program="lt_fatal", group="monitors", state="FATAL"
        )
        == 1
    )
    assert _sample("domos_supervisor_process_up", program="lt_fatal", group="monitors") == 0


def test_report_only_mode_does_not_shut_down():
    rpc = RecordingRpc([_info("lt_report", "FATAL")])
    stdin = io.StringIO(_event("PROCESS_STATE_FATAL", "processname:lt_report groupname:monitors"))
    listen(rpc, stdin=stdin, stdout=io.StringIO(), shutdown_on_fatal=False)
    assert rpc.shutdowns == 0


def test_states_uptime_and_restarts_are_exported():
    tracker = ProcessStateTracker()
    rpc = RecordingRpc([_info("lt_up", "RUNNING", start=100, now=160)])
    events = "".join(
        _event("PROCESS_STATE_STARTING", f"processname:lt_up groupname:monitors from_state:{s}")
        for s in ("STOPPED", "EXITED", "BACKOFF")
    ) + _event("TICK_5", "when:160")
    listen(rpc, stdin=io.StringIO(events), stdout=io.StringIO(), tracker=tracker)
    assert _sample("domos_supervisor_process_up", program="lt_up", group="monitors") == 1
    assert (
        _sample("domos_supervisor_process_uptime_seconds", program="lt_up", group="monitors") == 60
    )
    # The first start is not a restart; the two after it are.
    assert (
        _sample("domos_supervisor_process_restarts_total", program="lt_up", group="monitors") == 2
    )
    assert (
        _sample(
            "domos_supervisor_process_state", program="lt_up", group="monitors", state="STOPPED"
        )
        == 0
    )


def test_a_fatal_seen_only_in_the_process_list_shuts_supervisord_down_once():
    # supervisord discarded the PROCESS_STATE_FATAL event (its buffer overflowed): the next
    # events only refresh the list, and the list shows the program FATAL.
    rpc = RecordingRpc([_info("lt_lost", "FATAL"), _info("lt_ok", "RUNNING")])
    events = _event("TICK_5", "when:160") + _event(
        "PROCESS_STATE_RUNNING", "processname:lt_ok groupname:monitors from_state:STARTING"
    )
    stdout = io.StringIO()
    with capture_logs() as logs:
        listen(rpc, stdin=io.StringIO(events), stdout=stdout)
    assert rpc.shutdowns == 1
    fatal = [entry for entry in logs if entry["event"] == "program_fatal"]
    assert fatal == [
        {
            "event": "program_fatal",
            "log_level": "error",
            "program": "lt_lost",
            "group": "monitors",
            "seen_in": "process_list",
            "shutdown": True,
        }
    ]
    assert stdout.getvalue() == "READY\nRESULT 2\nOK" * 2 + "READY\n"


def test_report_only_mode_reports_each_fatal_episode_once():
    watch = FatalWatch()
    fatal = [_info("lt_a", "FATAL")]
    assert watch.newly_fatal(fatal, None) == [("lt_a", "monitors")]
    assert watch.newly_fatal(fatal, None) == []
    assert watch.newly_fatal(fatal, ("lt_a", "monitors")) == []  # its late event
    # Started again by hand, then FATAL again: a new episode.
    assert watch.newly_fatal([_info("lt_a", "RUNNING")], None) == []
    assert watch.newly_fatal(fatal, None) == [("lt_a", "monitors")]


class ShuttingDownRpc(RecordingRpc):
    def getAllProcessInfo(self) -> list[dict[str, Any]]:
        raise xmlrpc.client.Fault(6, "SHUTDOWN_STATE")


def test_supervisord_shutting_down_is_no_warning():
    stdin = io.StringIO(_event("TICK_5", "when:160") * 3)
    with capture_logs() as logs:
        listen(ShuttingDownRpc([]), stdin=stdin, stdout=io.StringIO())
    assert [entry["log_level"] for entry in logs] == ["debug"] * 3


def _exited(name: str, status: int) -> dict[str, Any]:
    return {**_info(name, "EXITED"), "exitstatus": status}


def test_a_program_that_exited_with_a_config_error_shuts_supervisord_down_once():
    # It ran past startsecs, so supervisord would never call it FATAL; exit 78 left it EXITED.
    rpc = RecordingRpc([_exited("lt_conf", EX_CONFIG), _info("lt_fine", "RUNNING")])
    events = _event(
        "PROCESS_STATE_EXITED", "processname:lt_conf groupname:monitors from_state:RUNNING"
    ) + _event("TICK_5", "when:165")
    before = _sample("domos_supervisor_fatal_shutdowns_total") or 0
    with capture_logs() as logs:
        listen(rpc, stdin=io.StringIO(events), stdout=io.StringIO())
    assert rpc.shutdowns == 1
    assert [entry for entry in logs if entry["event"] == "program_config_error"] == [
        {
            "event": "program_config_error",
            "log_level": "error",
            "program": "lt_conf",
            "group": "monitors",
            "exit_status": EX_CONFIG,
            "reason": "its configuration is invalid; its last log line names the setting",
            "shutdown": True,
        }
    ]
    counted = _sample("domos_supervisor_config_errors_total", program="lt_conf", group="monitors")
    assert counted == 1
    assert _sample("domos_supervisor_fatal_shutdowns_total") == before + 1
    # Series exist at 0 for the others, so increase() sees their first one.
    assert _sample("domos_supervisor_config_errors_total", program="lt_fine", group="monitors") == 0


def test_a_config_error_seen_only_in_the_process_list_still_counts():
    # The EXITED event was lost (buffer overflow): the TICK_5 refresh shows it.
    rpc = RecordingRpc([_exited("lt_conf_lost", EX_CONFIG)])
    listen(rpc, stdin=io.StringIO(_event("TICK_5", "when:160")), stdout=io.StringIO())
    assert rpc.shutdowns == 1


def test_other_exits_are_left_to_supervisord_to_restart():
    rpc = RecordingRpc(
        [_exited("lt_crash", 1), _exited("lt_clean", 0), _info("lt_backoff", "BACKOFF")]
    )
    events = _event("PROCESS_STATE_EXITED", "processname:lt_crash groupname:monitors") * 2
    with capture_logs() as logs:
        listen(rpc, stdin=io.StringIO(events), stdout=io.StringIO())
    assert rpc.shutdowns == 0
    assert [entry for entry in logs if entry["log_level"] == "error"] == []


def test_report_only_mode_reports_a_config_error_once_and_does_not_shut_down():
    rpc = RecordingRpc([_exited("lt_conf_report", EX_CONFIG)])
    with capture_logs() as logs:
        listen(
            rpc,
            stdin=io.StringIO(_event("TICK_5", "when:160") * 3),
            stdout=io.StringIO(),
            shutdown_on_fatal=False,
        )
    assert rpc.shutdowns == 0
    assert [entry["event"] for entry in logs].count("program_config_error") == 1


def test_config_error_watch_reports_each_episode_once():
    watch = ConfigErrorWatch()
    failed = [_exited("lt_b", EX_CONFIG)]
    assert watch.newly_failed(failed) == [("lt_b", "monitors")]
    assert watch.newly_failed(failed) == []
    assert watch.newly_failed([_info("lt_b", "RUNNING")]) == []  # started again by hand
    assert watch.newly_failed(failed) == [("lt_b", "monitors")]
