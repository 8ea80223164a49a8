"""`domos botapi [--host --port --workers]`: the webhook and /send service under gunicorn.

gunicorn is exec'd (it replaces this process), so supervisord's SIGTERM reaches gunicorn's master
directly and stops it gracefully. Metrics of all workers are added up with prometheus_client's
multiprocess mode in a fresh directory (PROMETHEUS_MULTIPROC_DIR; set it to choose the place).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "botapi",
        help="run the YooKassa webhook and /send service (Flask, gunicorn)",
        description=__doc__,
    )
    parser.add_argument("--host", default=None, help="bind address (BOTAPI_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (BOTAPI_PORT, 6000)")
    parser.add_argument("--workers", type=int, default=None, help="workers (BOTAPI_WORKERS, 2)")
    from runtime.db.schema_recheck import add_recheck_option

    add_recheck_option(parser)
    parser.set_defaults(handler=run)


def gunicorn_argv(host: str, port: int, workers: int) -> list[str]:
    config = Path(__file__).with_name("gunicorn_conf.py")
    return [
        sys.executable, "-m", "gunicorn",
        "--config", str(config),
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "services.botapi.wsgi:app",
    ]  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from runtime.config import Settings
    from runtime.db import check_login
    from runtime.db.schema_gate import PROGRAM_DATABASES, wait_before_serving
    from runtime.logging import configure_logging
    from services.botapi.main import program_settings
    from services.botapi.settings import BotApiSettings
    from services.common.metrics_dir import prepare_metrics_dir

    settings = BotApiSettings.from_env()  # fail here, with the variable named, not in a worker
    # Likewise a login PostgreSQL refuses: exit 78 (supervisord leaves it down) rather than
    # gunicorn's "worker failed to boot", which it restarts for ever.
    check_login(Settings.from_env())
    environ = dict(os.environ)
    prepare_metrics_dir(environ, program="botapi")
    # No worker before the schema has every migration of this code: webhooks would fail on
    # missing columns (YooKassa repeats them meanwhile; runtime.db.schema_gate). After the
    # metrics directory is made: a given one holds this process's gauges too.
    configure_logging(program_settings())
    if not wait_before_serving(
        Settings.from_env(),
        logical_dbs=PROGRAM_DATABASES["botapi"],
        recheck_s=args.schema_recheck,
    ):
        return 0
    environ.setdefault("DOMOS_PROGRAM", "botapi")
    argv = gunicorn_argv(
        args.host or settings.host,
        args.port if args.port is not None else settings.port,
        args.workers or settings.workers,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, environ)
