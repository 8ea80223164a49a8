"""`domos monitor NAME [--once] [--check]`: run one monitor, or check its health."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.config import Env, Settings
from runtime.db import async_database
from runtime.db.schema_gate import PROGRAM_DATABASES
from runtime.db.schema_recheck import DEFAULT_RECHECK_S, add_recheck_option
from runtime.errors import DomosError
from runtime.monitor.base import Monitor, build_config
from runtime.monitor.health import (
    DEFAULT_RUN_DIR,
    evaluate_health,
    health_path,
    read_health,
)
from runtime.monitor.loader import DEFAULT_PACKAGE, PACKAGE_VARIABLE, known_monitors, load_monitor

RUN_DIR_VARIABLE = "DOMOS_RUN_DIR"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="run one background monitor (or check its health)",
        description=__doc__,
    )
    parser.add_argument("name", nargs="?", help="monitor name: module monitors.NAME")
    parser.add_argument("--once", action="store_true", help="run a single tick and exit")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 if the last success is recent (see --max-age-intervals), else 1",
    )
    parser.add_argument(
        "--max-age-intervals",
        type=float,
        default=3.0,
        metavar="N",
        help="--check: healthy while the last success is younger than N intervals (default 3)",
    )
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, how long the tick in flight may take (default: the monitor's)",
    )
    parser.add_argument(
        "--package",
        default=None,
        help=f"package holding the monitor modules (default ${PACKAGE_VARIABLE} or "
        f"{DEFAULT_PACKAGE!r})",
    )
    add_recheck_option(parser)
    parser.add_argument("--list", action="store_true", help="list the known monitors")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    env = Env(os.environ)
    package = args.package or env.text(PACKAGE_VARIABLE, DEFAULT_PACKAGE) or DEFAULT_PACKAGE
    if args.list or args.name is None:
        names = known_monitors(package)
        print("\n".join(names) if names else f"no monitors found in package {package!r}")
        return 0 if args.list else 2
    monitor_cls = load_monitor(args.name, package)
    run_dir = Path(env.text(RUN_DIR_VARIABLE, DEFAULT_RUN_DIR) or DEFAULT_RUN_DIR)
    path = health_path(run_dir, monitor_cls.name)
    if args.check:
        return check(monitor_cls, path, max_age_intervals=args.max_age_intervals)
    settings = Settings.from_env(os.environ)
    # Before logging and the database: a bad value exits 78 (EX_CONFIG) naming its variable.
    config = build_config(monitor_cls, os.environ, settings)
    from runtime.logging import configure_logging

    # The supervisord program name when given, else the monitor's own name.
    configure_logging(settings, program=env.text("DOMOS_PROGRAM", monitor_cls.name))
    return asyncio.run(
        run_monitor(
            monitor_cls,
            settings,
            config=config,
            once=args.once,
            stop_timeout_s=args.stop_timeout,
            health_file=path,
            # domos' own monitors work on the domain schema; a test's package brings its own.
            schema_databases=PROGRAM_DATABASES["monitors"] if package == DEFAULT_PACKAGE else (),
            schema_recheck_s=args.schema_recheck,
        )
    )


def check(monitor_cls: type[Monitor], path: Path, *, max_age_intervals: float) -> int:
    max_age_s = max_age_intervals * monitor_cls.interval_s
    verdict = evaluate_health(read_health(path), now=time.time(), max_age_s=max_age_s)
    status = "healthy" if verdict.healthy else "unhealthy"
    print(f"{monitor_cls.name}: {status}: {verdict.reason}")
    return 0 if verdict.healthy else 1


async def run_monitor(
    monitor_cls: type[Monitor],
    settings: Settings,
    *,
    config: object | None = None,
    once: bool = False,
    stop_timeout_s: float | None = None,
    health_file: Path | None = None,
    schema_databases: Sequence[str] = (),
    schema_recheck_s: float = DEFAULT_RECHECK_S,
) -> int:
    """Open the database, serve metrics, run the monitor until SIGTERM/SIGINT (or one tick);
    first wait for the migrations of `schema_databases` (runtime.db.schema_gate)."""
    import structlog

    from runtime.metrics import serve_metrics
    from runtime.monitor.clock import clock_from_env
    from runtime.monitor.runner import MonitorRunner

    log = structlog.get_logger("runtime.monitor").bind(monitor=monitor_cls.name)
    db = async_database(settings)
    runner = MonitorRunner(
        monitor_cls,
        settings=settings,
        db=db,
        config=config,
        clock=clock_from_env(os.environ),
        health_path=health_file,
        once=once,
        stop_timeout_s=stop_timeout_s,
        schema_databases=schema_databases,
        schema_recheck_s=schema_recheck_s,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, runner.request_stop, signal.Signals(signum).name)
    # --once shares the environment (and so the port) of the long-running instance: no server.
    server = None if once else serve_metrics(settings.metrics_port, addr=settings.bind_host)
    if server is not None:
        log.info("metrics_serving", port=server.port)
    try:
        try:
            await db.open()
        except DomosError as exc:
            # Also as a log line: supervisord keeps the logs, the CLI's stderr line is terse.
            log.error("monitor_start_failed", error=str(exc), error_type=type(exc).__name__)
            raise
        try:
            if runner.stopping:
                return 0
            return await runner.run()
        finally:
            await db.close()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if server is not None:
            server.close()
        sys.stdout.flush()
