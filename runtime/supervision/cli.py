"""`domos run`: start the embedded default (SQLite, sandbox, every program) under supervisord."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, TextIO

from runtime.db import async_database


def register(subparsers: Any) -> None:
    register_run(subparsers)
    register_render(subparsers)


def register_run(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="start every program under supervisord on this machine (the embedded default)",
        description=__doc__,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("supervisord.conf"),
        help="supervisord configuration (default: ./supervisord.conf)",
    )
    parser.add_argument(
        "--no-demo",
        dest="demo",
        action="store_false",
        help="skip the demo scenario (`domos demo`) that runs once the programs are up",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import subprocess
    import sys

    from runtime.config import LogSettings, Settings
    from runtime.db.migrations import upgrade
    from runtime.errors import ConfigError
    from runtime.logging import configure_logging, resolve_format
    from runtime.supervision.embedded import STAFF_USERNAME, banner, embedded_environment

    config: Path = args.config.resolve()
    if not config.is_file():
        raise ConfigError("--config", f"no supervisord configuration at {config}")
    env = embedded_environment(os.environ, config.parent)
    # Decided once, here: the programs' stdout is supervisord's pipe, never a terminal, so
    # `auto` in each of them would always mean JSON. `make run` on a terminal reads as a
    # console; piped or redirected, or with LOG_FORMAT=json, it stays JSON lines.
    log_format = resolve_format(LogSettings.from_env(env).format, sys.stdout)
    env["LOG_FORMAT"] = log_format
    settings = Settings.from_env(env)
    configure_logging(settings, program="domos", stream=sys.stdout)
    _append_only(sys.stdout)
    for path in (settings.db.data_dir, Path(env["DOMOS_RUN_DIR"]), config.parent / "var" / "run"):
        path.mkdir(parents=True, exist_ok=True)

    async def apply_schema() -> None:
        async with async_database(settings) as db:
            await upgrade(db)

    asyncio.run(apply_schema())
    # Django's own tables and the staff login, so the admin works on the first start.
    subprocess.run(
        ["domos", "web", "createstaff", "--username", STAFF_USERNAME, "--superuser"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(banner(settings, env), flush=True)
    # Background children: they outlive the exec below (supervisord reaps them), so
    # supervisord's own programs stay exactly the catalogue's. The summary waits for the
    # programs and their pages, then prints once; the demo drives the programs.
    subprocess.Popen(
        ["domos", "supervisor", "status", "--config", str(config), "--wait-s", "120"],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if args.demo and env["DOMOS_ROLE"] == "embedded":
        subprocess.Popen(["domos", "demo"], env=env, stdin=subprocess.DEVNULL)
    argv = ["supervisord", "-c", str(config)]
    if os.getuid() == 0:
        # Started as root on purpose (a container build step, CI): say so, as supervisord asks,
        # instead of its "Supervisor is running as root" CRIT line on every start. The same uid
        # means no privileges are dropped.
        argv += ["--user", "root"]
    # Become supervisord: signals from the terminal (Ctrl-C) go straight to it.
    os.execvpe("supervisord", argv, env)
    return 0  # not reached


def _append_only(stream: TextIO) -> None:
    """`make run > run.log`: supervisord opens /dev/stdout again for itself and each program,
    each open with its own offset into the file; without O_APPEND on the shell's descriptor
    too, this process's lines and the background children's overwrote the programs' lines."""
    import fcntl
    import stat

    try:
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    except (OSError, ValueError):
        pass  # not a real file descriptor (tests): nothing to share


def register_render(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "supervisor",
        help="supervisord integration: render supervisor/, or run the event listener",
        description=(
            "render: write supervisor/ from runtime/supervision/programs.py (or --check it). "
            "listen: the event listener (FATAL -> shutdown, process metrics). "
            "status: once the programs are up (or --wait-s passed), their states and where to"
            " look (what `domos run` prints after the start). check: the settings of the role's"
            " programs (--role, default $DOMOS_ROLE), read from the environment as they read"
            " them; exit 78 naming every bad variable (docker/entrypoint.sh, before supervisord)."
        ),
    )
    parser.add_argument("action", choices=["render", "listen", "status", "check"])
    parser.add_argument("--root", type=Path, default=Path("supervisor"))
    parser.add_argument("--check", action="store_true", help="render: report differences; exit 1")
    parser.add_argument(
        "--no-shutdown-on-fatal",
        dest="shutdown_on_fatal",
        action="store_false",
        help="listen: only report FATAL programs instead of shutting supervisord down",
    )
    parser.add_argument("--role", default=None, help="check: the role (default: $DOMOS_ROLE)")
    parser.add_argument("--metrics-port", type=int, default=None, help="listen: /metrics port")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("supervisord.conf"),
        help="status: supervisord configuration (default: ./supervisord.conf)",
    )
    parser.add_argument(
        "--wait-s",
        type=float,
        default=0.0,
        help="status: wait up to this long for every program RUNNING and its page answering",
    )
    parser.set_defaults(handler=supervisor_command)


def supervisor_command(args: argparse.Namespace) -> int:
    if args.action == "listen":
        from runtime.supervision.listener import main

        return main(shutdown_on_fatal=args.shutdown_on_fatal, metrics_port=args.metrics_port)
    if args.action == "check":
        return check_command(args)
    if args.action == "status":
        import sys

        from runtime.config import LogSettings
        from runtime.supervision.embedded import print_status

        colors = LogSettings.from_env().format == "console"
        return print_status(args.config.resolve(), os.environ, args.wait_s, sys.stdout, colors)
    from runtime.supervision.programs import differences, write_tree

    if args.check:
        problems = differences(args.root)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    write_tree(args.root)
    return 0


def check_command(args: argparse.Namespace) -> int:
    import sys

    from runtime.config import Env
    from runtime.errors import EX_CONFIG, ConfigError
    from runtime.supervision.preflight import check_role
    from runtime.supervision.programs import roles

    role = args.role or Env(os.environ).text("DOMOS_ROLE")
    if role is None:
        raise ConfigError("DOMOS_ROLE", "is required (or --role)")
    if role not in roles():
        raise ConfigError("DOMOS_ROLE", f"unknown role {role!r} ({', '.join(roles())})")
    problems = check_role(role, os.environ)
    for problem in problems:
        print(f"domos supervisor check: error: {problem}", file=sys.stderr)
    return EX_CONFIG if problems else 0
