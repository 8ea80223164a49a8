from __future__ import annotations

import io
import xmlrpc.client
from typing import Any

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from runtime.supervision.listener import FatalWatch, ProcessStateTracker, listen, parse_headers


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
