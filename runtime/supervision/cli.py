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
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from runtime.config import Settings
    from runtime.db import AsyncDatabase
    from runtime.db.migrations import upgrade
    from runtime.errors import ConfigError
    from runtime.supervision.embedded import banner, embedded_environment

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
    print(banner(settings, env, config), flush=True)
    # Become supervisord: signals from the terminal (Ctrl-C) go straight to it.
    os.execvpe("supervisord", ["supervisord", "-c", str(config)], env)
    return 0  # not reached


def register_render(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "supervisor",
        help="render supervisor/ (program files and role directories) from the catalogue",
        description="Write supervisor/ from runtime/supervision/programs.py, or --check it.",
    )
    parser.add_argument("action", choices=["render"])
    parser.add_argument("--root", type=Path, default=Path("supervisor"))
    parser.add_argument("--check", action="store_true", help="only report differences; exit 1")
    parser.set_defaults(handler=render)


def render(args: argparse.Namespace) -> int:
    from runtime.supervision.programs import differences, write_tree

    if args.check:
        problems = differences(args.root)
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    write_tree(args.root)
    return 0
