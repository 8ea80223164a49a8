"""supervisord event listener: FATAL means shut down, and process states become metrics.

Runs as `[eventlistener:supervisor_exporter]` in every role (`domos supervisor listen`).

- A program that reaches FATAL (it could not stay up after `startretries`) would otherwise stay
  down for the life of the container. The maintainers' answer is a listener that calls
  `supervisor.shutdown()`: supervisord stops everything and exits, and the container's restart
  policy brings the role back whole. `--no-shutdown-on-fatal` only reports. A FATAL counts
  whether its PROCESS_STATE_FATAL event arrives or the process list shows it: supervisord
  discards events when the listener's buffer overflows (`buffer_size` in programs.py).
- A program that exits with EX_CONFIG (78, runtime.errors: a configuration error such as an
  unknown DOMOS_TIMEZONE, a token Telegram refuses, a password PostgreSQL refuses) is handled the
  same way, at once: its start took longer than `startsecs`, so it was RUNNING and would never
  reach FATAL, only restart forever. supervisord leaves it EXITED (`exitcodes` in programs.py),
  so the process list shows it even when the event is lost.
- Every event (state changes and TICK_5) refreshes gauges from `getAllProcessInfo()`:
  domos_supervisor_process_state{program,group,state}, domos_supervisor_process_uptime_seconds,
  domos_supervisor_process_up, and counts restarts (a program entering STARTING again after it
  had run) in domos_supervisor_process_restarts_total.

The event protocol owns stdout (`READY`, `RESULT 2\\nOK`); this module logs to stderr only.
"""

from __future__ import annotations

import os
import signal
import sys
import xmlrpc.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import structlog
from prometheus_client import Counter, Gauge

from runtime.errors import EX_CONFIG

STATES = ("STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN")

PROCESS_STATE = Gauge(
    "domos_supervisor_process_state",
    "1 for the current supervisord state of each program, 0 for the others.",
    ["program", "group", "state"],
)
PROCESS_UP = Gauge(
    "domos_supervisor_process_up", "1 while the program is RUNNING.", ["program", "group"]
)
PROCESS_UPTIME = Gauge(
    "domos_supervisor_process_uptime_seconds",
    "Seconds since the program last started (0 when not running).",
    ["program", "group"],
)
PROCESS_RESTARTS = Counter(
    "domos_supervisor_process_restarts_total",
    "Times a program was started again after it had been started before.",
    ["program", "group"],
)
FATAL_SHUTDOWNS = Counter(
    "domos_supervisor_fatal_shutdowns_total",
    "supervisord shutdowns asked for after a FATAL program or a configuration error (exit 78).",
)
CONFIG_ERRORS = Counter(
    "domos_supervisor_config_errors_total",
    "Times a program exited with EX_CONFIG (78): a configuration error restarting cannot fix.",
    ["program", "group"],
)

log = structlog.get_logger("supervisor_listener")


class Rpc(Protocol):
    def getAllProcessInfo(self) -> list[dict[str, Any]]: ...

    def shutdown(self) -> Any: ...


def parse_headers(line: str) -> dict[str, str]:
    """`ver:3.0 server:supervisor eventname:TICK_5 len:15` -> dict."""
    return dict(token.split(":", 1) for token in line.split())


def parse_payload(payload: str) -> tuple[dict[str, str], str]:
    """A PROCESS_STATE payload: a header line, then (for some events) data."""
    header, _, data = payload.partition("\n")
    return parse_headers(header), data


@dataclass
class ProcessStateTracker:
    """Turns supervisord's process list and events into the gauges and counters above."""

    starts: dict[tuple[str, str], int] = field(default_factory=dict)

    def on_event(self, eventname: str, payload: Mapping[str, str]) -> None:
        if eventname == "PROCESS_STATE_STARTING":
            key = (payload.get("processname", "?"), payload.get("groupname", "?"))
            self.starts[key] = self.starts.get(key, 0) + 1
            if self.starts[key] > 1:
                PROCESS_RESTARTS.labels(program=key[0], group=key[1]).inc()

    def refresh(self, processes: list[dict[str, Any]]) -> None:
        for info in processes:
            program, group, state = info["name"], info["group"], info["statename"]
            # The restart counter exists at 0 from the first sight, so increase() sees the
            # first restart (a series that appears at 1 shows no increase).
            PROCESS_RESTARTS.labels(program=program, group=group)
            CONFIG_ERRORS.labels(program=program, group=group)
            for candidate in STATES:
                PROCESS_STATE.labels(program=program, group=group, state=candidate).set(
                    1 if candidate == state else 0
                )
            running = state == "RUNNING"
            PROCESS_UP.labels(program=program, group=group).set(1 if running else 0)
            uptime = max(0, int(info["now"]) - int(info["start"])) if running else 0
            PROCESS_UPTIME.labels(program=program, group=group).set(uptime)


def rpc_from_environment(env: Mapping[str, str]) -> Rpc:
    from supervisor.childutils import getRPCInterface

    proxy: Any = getRPCInterface(dict(env))
    supervisor: Rpc = proxy.supervisor
    return supervisor


#: supervisord's XML-RPC fault while it stops (supervisor.xmlrpc.Faults.SHUTDOWN_STATE).
SHUTDOWN_STATE_FAULT = 6


@dataclass
class FatalWatch:
    """Which programs are FATAL, from events and from every refresh of the process list.

    supervisord drops events when a listener's buffer overflows, so a PROCESS_STATE_FATAL event
    may never arrive: the state that getAllProcessInfo() shows is acted on too. Each FATAL
    episode of a program is reported once (a refresh every TICK_5 would repeat it otherwise).
    """

    reported: set[tuple[str, str]] = field(default_factory=set)

    def newly_fatal(
        self, processes: list[dict[str, Any]], event: tuple[str, str] | None
    ) -> list[tuple[str, str]]:
        fatal = {(p["name"], p["group"]) for p in processes if p["statename"] == "FATAL"}
        if event is not None:
            fatal.add(event)  # even if a `supervisorctl start` has already moved it on
        # A program that left FATAL may be reported again when it returns there.
        self.reported &= fatal
        new = sorted(fatal - self.reported)
        self.reported |= fatal
        return new


def config_failed(info: Mapping[str, Any]) -> bool:
    """EXITED with EX_CONFIG: stopped by its configuration, and left down by supervisord."""
    return info["statename"] == "EXITED" and info.get("exitstatus") == EX_CONFIG


@dataclass
class ConfigErrorWatch:
    """Which programs exited with EX_CONFIG, from every refresh of the process list; each
    episode reported once, like FatalWatch (a program stays EXITED until started again)."""

    reported: set[tuple[str, str]] = field(default_factory=set)

    def newly_failed(self, processes: list[dict[str, Any]]) -> list[tuple[str, str]]:
        failed = {(p["name"], p["group"]) for p in processes if config_failed(p)}
        self.reported &= failed
        new = sorted(failed - self.reported)
        self.reported |= failed
        return new


def listen(
    rpc: Rpc,
    *,
    stdin: TextIO,
    stdout: TextIO,
    shutdown_on_fatal: bool = True,
    tracker: ProcessStateTracker | None = None,
    should_continue: Callable[[], bool] = lambda: True,
) -> None:
    """The event loop: READY, read one event, handle it, RESULT OK; until stdin closes."""
    tracker = tracker or ProcessStateTracker()
    watch = FatalWatch()
    config_watch = ConfigErrorWatch()
    shutdown_asked = False
    while should_continue():
        stdout.write("READY\n")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return  # supervisord closed our stdin: it is going away
        headers = parse_headers(line)
        payload_headers, _ = parse_payload(stdin.read(int(headers["len"])))
        eventname = headers.get("eventname", "")
        tracker.on_event(eventname, payload_headers)
        event = (
            (payload_headers.get("processname", "?"), payload_headers.get("groupname", "?"))
            if eventname == "PROCESS_STATE_FATAL"
            else None
        )
        try:
            processes = rpc.getAllProcessInfo()
            tracker.refresh(processes)
            gave_up = False
            for program, group in watch.newly_fatal(processes, event):
                log.error(
                    "program_fatal",
                    program=program,
                    group=group,
                    seen_in="event" if (program, group) == event else "process_list",
                    shutdown=shutdown_on_fatal,
                )
                gave_up = True
            for program, group in config_watch.newly_failed(processes):
                CONFIG_ERRORS.labels(program=program, group=group).inc()
                log.error(
                    "program_config_error",
                    program=program,
                    group=group,
                    exit_status=EX_CONFIG,
                    reason="its configuration is invalid; its last log line names the setting",
                    shutdown=shutdown_on_fatal,
                )
                gave_up = True
            if gave_up and shutdown_on_fatal and not shutdown_asked:
                FATAL_SHUTDOWNS.inc()
                rpc.shutdown()
                shutdown_asked = True
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == SHUTDOWN_STATE_FAULT:
                # Expected while supervisord stops every program (Ctrl-C, docker stop, or our
                # own shutdown): the states are no news, nor is a FATAL any more.
                log.debug("supervisor_shutting_down")
            else:
                log.warning("supervisor_rpc_failed", error=str(exc))
        except OSError as exc:
            # supervisord may be going away; the next event tells.
            log.warning("supervisor_rpc_failed", error=str(exc))
        stdout.write("RESULT 2\nOK")
        stdout.flush()


def main(*, shutdown_on_fatal: bool, metrics_port: int | None) -> int:
    from runtime.config import LogSettings, bind_host
    from runtime.logging import configure_logging
    from runtime.metrics import serve_metrics

    # LOG_LEVEL and LOG_FORMAT only: a listener that failed on another setting would leave
    # FATAL programs unwatched.
    configure_logging(
        LogSettings.from_env(os.environ), program="supervisor_listener", stream=sys.stderr
    )
    serve_metrics(metrics_port, addr=bind_host(os.environ))
    # supervisord stops the listener last, with SIGTERM: a clean exit, not "terminated by
    # SIGTERM" in its log on every stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listen(
        rpc_from_environment(os.environ),
        stdin=sys.stdin,
        stdout=sys.stdout,
        shutdown_on_fatal=shutdown_on_fatal,
    )
    return 0
