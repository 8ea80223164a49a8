"""The catalogue of supervised programs, and the supervisord files rendered from it.

One source of truth: each program's command, role, metrics port and stop budget are declared here;
`domos supervisor render` writes `supervisor/programs/*.conf` and the role directories (links to
the programs a role runs, plus its group), and `--check` (run by the tests) fails when the
committed files differ. The Prometheus scrape config and the compose file are checked against the
same catalogue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import EX_CONFIG

#: Roles of production containers. `all` is every production program in one supervisord;
#: `embedded` adds the sandbox (the `make run` default without real tokens).
PRODUCTION_ROLES = ("api", "web", "bot", "monitors")
COMPOSITE_ROLES = {"all": PRODUCTION_ROLES, "embedded": (*PRODUCTION_ROLES, "sandbox")}


@dataclass(frozen=True)
class Program:
    name: str
    role: str
    command: str
    #: Port of its /metrics endpoint (may be the service's own port).
    metrics_port: int | None
    #: supervisord waits this long after SIGTERM before SIGKILL; must exceed the program's own
    #: graceful-stop budget (a monitor's stop_timeout_s, uvicorn's/gunicorn's graceful timeout).
    stopwaitsecs: int
    #: Short, so a killed program is RUNNING again within 3 s (supervisord restarts it at once,
    #: then waits startsecs). A start-up that fails sooner ends in FATAL after startretries; one
    #: that fails later (a configuration error found after seconds of imports) would restart
    #: forever, so it exits with EX_CONFIG instead (see `render_program`).
    startsecs: int = 1
    #: Lower starts first and stops last (the sandbox before the programs that call it). Across
    #: roles it takes effect through the group's priority, the lowest of its programs'.
    priority: int = 100
    #: The service answers /metrics on its own HTTP port (no METRICS_PORT side server).
    serves_own_metrics: bool = False


def _monitor(name: str, port: int, stopwaitsecs: int = 40) -> Program:
    return Program(name, "monitors", f"domos monitor {name}", port, stopwaitsecs)


PROGRAMS: tuple[Program, ...] = (
    Program(
        "sandbox",
        "sandbox",
        # The state file next to the data it belongs to: a second run on the same data finds
        # the members, chats and payments the database remembers (services.sandbox.state_file).
        "domos sandbox --host %(ENV_DOMOS_BIND_HOST)s --port %(ENV_SANDBOX_PORT)s"
        " --webhook-url %(ENV_SANDBOX_YOOKASSA_WEBHOOK_URL)s"
        " --state-file %(ENV_DOMOS_DATA_DIR)s/sandbox/state.json",
        None,
        stopwaitsecs=10,
        priority=10,
    ),
    Program(
        "api",
        "api",
        "domos api --host %(ENV_DOMOS_BIND_HOST)s --port 8001",
        8001,
        stopwaitsecs=20,  # uvicorn's graceful timeout is 10 s
        serves_own_metrics=True,
    ),
    Program(
        "web",
        "web",
        # Applies Django's own migrations (idempotent) and collectstatic before serving.
        "domos web --host %(ENV_DOMOS_BIND_HOST)s --port 8002",
        8002,
        stopwaitsecs=20,  # gunicorn's graceful_timeout is 10 s
        serves_own_metrics=True,
    ),
    Program("bot", "bot", "domos bot", 9100, stopwaitsecs=20),  # BOT_DRAIN_TIMEOUT_S is 10 s
    Program(
        "botapi",
        "bot",
        "domos botapi --host %(ENV_DOMOS_BIND_HOST)s --port 6000",
        6000,
        stopwaitsecs=20,  # gunicorn's graceful_timeout is 10 s
        serves_own_metrics=True,
    ),
    _monitor("tsmonitor", 9101),
    _monitor("payment_monitor", 9102),
    _monitor("recurrent_payments", 9103),
    _monitor("notifymonitor", 9104),
    _monitor("eventsmonitor", 9105),
    _monitor("ban_monitor", 9106),
    _monitor("monthly_anket", 9107),
    _monitor("parse_messages", 9108),
    Program(
        "backup",
        "monitors",
        "domos backup schedule --every-hours 6 --keep-days 14",
        9109,
        # A dump in flight is written to a .partial file and renamed only when checked, so a
        # stop that interrupts it loses nothing but that round; the next start dumps again.
        stopwaitsecs=45,
    ),
)


#: The event listener that every role runs (runtime.supervision.listener).
LISTENER_NAME = "supervisor_exporter"
LISTENER_METRICS_PORT = 9200
#: Events supervisord queues for the listener while it is busy or still starting; beyond them
#: it discards the oldest ("event buffer overflowed"). supervisord's default of 10 overflowed
#: on every `make run`: 15 programs pass STARTING and RUNNING within a second or two, before
#: the listener has imported and said READY. A program in a crash loop adds STARTING and BACKOFF
#: per retry, so a whole role failing at once on a loaded machine stays under
#: 15 x (2 x 6 + 1) = 195 events; 1024 leaves room for more programs and a slow listener, at a
#: few hundred bytes an event. The listener does not rely on any one event anyway.
LISTENER_BUFFER_SIZE = 1024
#: The XML-RPC login of supervisord.conf's [unix_http_server], for the listener (supervisor's
#: childutils read it from the environment). Not a secret: the socket's mode protects it.
SUPERVISOR_RPC_LOGIN = ("domos", "socket-mode-0700")


def render_listener() -> str:
    return "\n".join(
        [
            "; Rendered from runtime/supervision/programs.py by `domos supervisor render`.",
            "; FATAL -> supervisord shutdown (the container restarts whole); process metrics.",
            f"[eventlistener:{LISTENER_NAME}]",
            f"command=domos supervisor listen --metrics-port {LISTENER_METRICS_PORT}",
            "directory=%(ENV_DOMOS_HOME)s",
            f'environment=DOMOS_PROGRAM="{LISTENER_NAME}",'
            f'SUPERVISOR_USERNAME="{SUPERVISOR_RPC_LOGIN[0]}",'
            f'SUPERVISOR_PASSWORD="{SUPERVISOR_RPC_LOGIN[1]}"',
            "events=PROCESS_STATE,TICK_5",
            f"buffer_size={LISTENER_BUFFER_SIZE}",
            "priority=1",
            "autorestart=true",
            "startsecs=1",
            "stopwaitsecs=5",
            # stdout is the event protocol; the listener logs to stderr.
            "stdout_logfile=NONE",
            "stderr_logfile=/dev/stderr",
            "stderr_logfile_maxbytes=0",
            "",
        ]
    )


def by_name() -> dict[str, Program]:
    return {program.name: program for program in PROGRAMS}


def roles() -> dict[str, tuple[Program, ...]]:
    """Every role (production, sandbox and composite) and the programs it runs."""
    single = {program.role for program in PROGRAMS}
    result = {role: tuple(p for p in PROGRAMS if p.role == role) for role in sorted(single)}
    for role, members in COMPOSITE_ROLES.items():
        result[role] = tuple(p for p in PROGRAMS if p.role in members)
    return result


def render_program(program: Program) -> str:
    environment = f'DOMOS_PROGRAM="{program.name}"'
    if program.metrics_port is not None and not program.serves_own_metrics:
        environment += f',METRICS_PORT="{program.metrics_port}"'
    return "\n".join(
        [
            "; Rendered from runtime/supervision/programs.py by `domos supervisor render`.",
            f"[program:{program.name}]",
            f"command={program.command}",
            "directory=%(ENV_DOMOS_HOME)s",
            f"environment={environment}",
            f"priority={program.priority}",
            "autostart=true",
            # Restarted whatever its exit, but for EX_CONFIG (a configuration error,
            # runtime.errors): restarting cannot fix it, so supervisord leaves it EXITED and the
            # event listener shuts the role down as for FATAL. (An exit status outside
            # `exitcodes` is also why a stop logs "stopped: ... (exit status 0)" at WARN.)
            f"; Exit {EX_CONFIG} (EX_CONFIG) is a configuration error: left EXITED, the listener"
            " restarts the container.",
            "autorestart=unexpected",
            f"exitcodes={EX_CONFIG}",
            f"startsecs={program.startsecs}",
            "startretries=5",
            "stopsignal=TERM",
            f"stopwaitsecs={program.stopwaitsecs}",
            # The whole process group gets the signal, so children (gunicorn workers) stop too.
            "stopasgroup=true",
            "killasgroup=true",
            # Logs to the container's stdout; rotation must be off for a non-seekable file.
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "redirect_stderr=true",
            "",
        ]
    )


def render_group(role: str, programs: tuple[Program, ...]) -> str:
    names = ",".join(program.name for program in programs)
    # supervisord orders whole groups: ascending priority to start, descending to stop, one group
    # after the other. Without it every group is 999 and they stop by name, so the embedded
    # sandbox stopped before the monitors whose tick in flight was still calling it.
    priority = min(program.priority for program in programs)
    return f"[group:{role}]\nprograms={names}\npriority={priority}\n"


def expected_tree() -> dict[str, str | Path]:
    """Relative path -> file content (str) or symlink target (Path), under supervisor/."""
    tree: dict[str, str | Path] = {f"programs/{LISTENER_NAME}.conf": render_listener()}
    for program in PROGRAMS:
        tree[f"programs/{program.name}.conf"] = render_program(program)
    single_roles = sorted({program.role for program in PROGRAMS})
    for role in single_roles:
        members = tuple(p for p in PROGRAMS if p.role == role)
        tree[f"groups/{role}.conf"] = render_group(role, members)
    for role, members in roles().items():
        tree[f"roles/{role}/{LISTENER_NAME}.conf"] = Path(f"../../programs/{LISTENER_NAME}.conf")
        for program in members:
            tree[f"roles/{role}/{program.name}.conf"] = Path(f"../../programs/{program.name}.conf")
        for group in sorted({p.role for p in members}):
            tree[f"roles/{role}/group-{group}.conf"] = Path(f"../../groups/{group}.conf")
    return tree


def differences(root: Path) -> list[str]:
    """What differs between the files under `root` (supervisor/) and the catalogue."""
    expected = expected_tree()
    problems = []
    for relative, want in expected.items():
        path = root / relative
        if isinstance(want, Path):
            if not path.is_symlink() or Path(os.readlink(path)) != want:
                problems.append(f"{relative}: should link to {want}")
        elif not path.is_file() or path.is_symlink() or path.read_text() != want:
            problems.append(f"{relative}: content differs from the catalogue")
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if (path.is_file() or path.is_symlink()) and relative not in expected:
            problems.append(f"{relative}: not in the catalogue")
    return problems


def write_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_symlink() or path.is_file():
            path.unlink()
    for relative, want in expected_tree().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(want, Path):
            path.symlink_to(want)
        else:
            path.write_text(want)
