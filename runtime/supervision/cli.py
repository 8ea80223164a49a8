"""`domos run`: start the embedded default (SQLite, sandbox, every program) under supervisord."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
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
