"""`domos run`: start the embedded default (SQLite, sandbox, every program) under supervisord."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


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

    from runtime.config import Settings
    from runtime.db import AsyncDatabase
    from runtime.db.migrations import upgrade
    from runtime.errors import ConfigError
    from runtime.supervision.embedded import STAFF_USERNAME, banner, embedded_environment

    config: Path = args.config.resolve()
    if not config.is_file():
        raise ConfigError("--config", f"no supervisord configuration at {config}")
    env = embedded_environment(os.environ, config.parent)
    settings = Settings.from_env(env)
    for path in (settings.db.data_dir, Path(env["DOMOS_RUN_DIR"]), config.parent / "var" / "run"):
        path.mkdir(parents=True, exist_ok=True)

    async def apply_schema() -> None:
        async with AsyncDatabase.from_settings(settings) as db:
            await upgrade(db)

    asyncio.run(apply_schema())
    # Django's own tables and the staff login, so the admin works on the first start.
    subprocess.run(
        ["domos", "web", "createstaff", "--username", STAFF_USERNAME, "--superuser"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(banner(settings, env, config), flush=True)
    if args.demo and env["DOMOS_ROLE"] == "embedded":
        # A background child: it outlives the exec below (supervisord reaps it) and waits for
        # the programs it drives, so supervisord's own programs stay exactly the catalogue's.
        subprocess.Popen(["domos", "demo"], env=env, stdin=subprocess.DEVNULL)
    # Become supervisord: signals from the terminal (Ctrl-C) go straight to it.
    os.execvpe("supervisord", ["supervisord", "-c", str(config)], env)
    return 0  # not reached


def register_render(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "supervisor",
        help="supervisord integration: render supervisor/, or run the event listener",
        description=(
            "render: write supervisor/ from runtime/supervision/programs.py (or --check it). "
            "listen: the event listener (FATAL -> shutdown, process metrics)."
        ),
    )
    parser.add_argument("action", choices=["render", "listen"])
    parser.add_argument("--root", type=Path, default=Path("supervisor"))
    parser.add_argument("--check", action="store_true", help="render: report differences; exit 1")
    parser.add_argument(
        "--no-shutdown-on-fatal",
        dest="shutdown_on_fatal",
        action="store_false",
        help="listen: only report FATAL programs instead of shutting supervisord down",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="listen: /metrics port")
    parser.set_defaults(handler=supervisor_command)


def supervisor_command(args: argparse.Namespace) -> int:
    if args.action == "listen":
        from runtime.supervision.listener import main

        return main(shutdown_on_fatal=args.shutdown_on_fatal, metrics_port=args.metrics_port)
    from runtime.supervision.programs import differences, write_tree

    if args.check:
        problems = differences(args.root)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    write_tree(args.root)
    return 0
