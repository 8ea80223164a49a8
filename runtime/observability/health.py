"""`domos health`: the container HEALTHCHECK of a role.

Healthy when every program of the role (from the catalogue) and the event listener are RUNNING
in this container's supervisord, every monitor among them passes the same check as
`domos monitor NAME --check` (its health file shows a success younger than 3 intervals, or a
fresh standby heartbeat), and every HTTP service among them accepts connections on its port.
supervisord calls a program RUNNING one second after it started (startsecs), before uvicorn or
gunicorn listen: without the port a fresh container was healthy while its published port
still reset connections. One process answers for the whole role: a health check runs every few
seconds on a small machine, so it does not start one interpreter per monitor.
"""

from __future__ import annotations

import os
import socket
import time
import xmlrpc.client
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.config import bind_host
from runtime.monitor.health import evaluate_health, health_path, read_health
from runtime.supervision.programs import LISTENER_NAME, Program, roles

#: Same default as `domos monitor NAME --check`.
MAX_AGE_INTERVALS = 3.0


@dataclass(frozen=True)
class Finding:
    name: str
    healthy: bool
    reason: str

    def line(self) -> str:
        return f"{self.name}: {'healthy' if self.healthy else 'unhealthy'}: {self.reason}"


def monitor_name(program: Program) -> str | None:
    """The monitor a program runs (`domos monitor NAME ...`), or None."""
    words = program.command.split()
    if words[:2] == ["domos", "monitor"] and len(words) > 2:
        return words[2]
    return None


def expected_programs(role: str) -> tuple[Program, ...]:
    known = roles()
    if role not in known:
        return ()
    return known[role]


def check_processes(
    role: str, processes: Sequence[Mapping[str, Any]]
) -> tuple[list[Finding], list[Program]]:
    """Findings for every expected process; also the programs seen RUNNING."""
    by_name = {str(info["name"]): info for info in processes}
    findings = []
    running = []
    for name, program in [(LISTENER_NAME, None), *((p.name, p) for p in expected_programs(role))]:
        info = by_name.get(name)
        if info is None:
            findings.append(Finding(name, False, "not known to supervisord"))
            continue
        state = str(info.get("statename", "UNKNOWN"))
        findings.append(Finding(name, state == "RUNNING", state))
        if state == "RUNNING" and program is not None:
            running.append(program)
    return findings, running


def check_monitors(programs: Sequence[Program], run_dir: Path, *, now: float) -> list[Finding]:
    findings = []
    for program in programs:
        name = monitor_name(program)
        if name is None:
            continue
        state = read_health(health_path(run_dir, name))
        max_age_s = MAX_AGE_INTERVALS * (state.interval_s if state is not None else 0.0)
        verdict = evaluate_health(state, now=now, max_age_s=max_age_s)
        findings.append(Finding(f"{program.name} (monitor)", verdict.healthy, verdict.reason))
    return findings


#: How long a service may take to accept a connection before it counts as not listening.
CONNECT_TIMEOUT_S = 2.0


def check_services(programs: Sequence[Program], host: str) -> list[Finding]:
    """Whether each HTTP service (it serves its own port) accepts a connection on `host`."""
    findings = []
    for program in programs:
        if not program.serves_own_metrics or program.metrics_port is None:
            continue
        port = program.metrics_port
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                findings.append(Finding(f"{program.name} (port)", True, f"listening on {port}"))
        except OSError as exc:
            findings.append(Finding(f"{program.name} (port)", False, f"port {port}: {exc}"))
    return findings


def probe_host(bind_host: str) -> str:
    """Where a service bound to DOMOS_BIND_HOST is reached from inside its container."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "::") else bind_host


def supervisor_processes(config: Path) -> list[dict[str, Any]]:
    """`getAllProcessInfo()` from the supervisord that `config` describes."""
    from supervisor.options import ClientOptions
    from supervisor.xmlrpc import SupervisorTransport

    options = ClientOptions()
    options.realize(args=["-c", str(config)], doc="")
    transport = SupervisorTransport(options.username, options.password, options.serverurl)
    proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport)
    try:
        processes: Any = proxy.supervisor.getAllProcessInfo()
    finally:
        # Also closes the socket of a connection that failed (supervisord not running).
        transport.close()
    return [dict(info) for info in processes]


def check_role(role: str, config: Path, run_dir: Path) -> list[Finding]:
    if role not in roles():
        return [Finding(role, False, f"unknown role; known: {', '.join(sorted(roles()))}")]
    try:
        processes = supervisor_processes(config)
    except (OSError, xmlrpc.client.Error) as exc:
        return [Finding("supervisord", False, f"not answering: {exc}")]
    findings, running = check_processes(role, processes)
    host = probe_host(bind_host(os.environ))
    return (
        findings + check_monitors(running, run_dir, now=time.time()) + check_services(running, host)
    )
