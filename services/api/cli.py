"""`domos api [--host --port]`: the REST API under uvicorn, stopped gracefully by SIGTERM/SIGINT
(uvicorn stops accepting, finishes requests in flight within the grace period, then the lifespan
closes the database pool)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

GRACEFUL_TIMEOUT_S = 10


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "api", help="run the REST API (FastAPI, uvicorn)", description=__doc__
    )
    parser.add_argument("--host", default=None, help="bind address (API_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (API_PORT, 8001)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import structlog
    import uvicorn

    from runtime.config import Settings
    from runtime.logging import configure_logging
    from runtime.metrics import serve_metrics
    from services.api.app import create_app
    from services.api.settings import ApiSettings

    settings = Settings.from_env()
    if "DOMOS_PROGRAM" not in os.environ:
        settings = dataclasses.replace(settings, program="api")
    api_settings = ApiSettings.from_env()
    # Payments need YooKassa: refuse to start with the variable named, not a lifespan traceback.
    settings.yookassa.require_credentials()
    configure_logging(settings)
    host = args.host or api_settings.host
    port = args.port if args.port is not None else api_settings.port
    serve_metrics(settings.metrics_port, addr=settings.bind_host)
    startup = _StartupErrors(create_app(settings, api_settings))
    config = uvicorn.Config(
        startup.app,
        host=host,
        port=port,
        log_config=None,  # runtime.logging already routes uvicorn's loggers
        lifespan="on",
        proxy_headers=True,
        # Not uvicorn's loopback-only default: behind a host proxy, requests arrive from Docker's
        # bridge gateway, and every member shared its address in the per-source rate limit.
        forwarded_allow_ips=[str(network) for network in api_settings.trusted_proxies],
        # uvicorn formats each access line's fields before the logger drops it: off only where
        # LOG_LEVEL drops them anyway (bench/api).
        access_log=logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO),
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT_S,
        server_header=False,
        # More connections or requests in flight than this get uvicorn's 503 at once instead of
        # queueing without bound (API_MAX_CONCURRENCY).
        limit_concurrency=api_settings.max_concurrency,
    )
    log = structlog.get_logger("api")
    log.info("api_starting", host=host, port=port)
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal once it has shut down gracefully; for SIGTERM (the
    # supervisord stop) that is a normal end, so exit 0 instead of dying by the signal.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run()
    except SystemExit:
        if startup.config_error is None:
            raise
    if startup.config_error is not None:
        # The lifespan met a configuration error (PostgreSQL refused the password, say): exit
        # EX_CONFIG, which supervisord does not restart (runtime.cli prints it), rather than
        # uvicorn's start-up failure (3), which it does.
        raise startup.config_error
    # A failed start (port in use, database down in the lifespan) leaves `started` false.
    return 0 if server.started else 1


class _StartupErrors:
    """Remembers a ConfigError that the app's lifespan start-up raised: uvicorn reports a failed
    start-up only as a traceback and `started` false. Wraps the router's lifespan, not the ASGI
    app, so requests pay nothing for it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.config_error: Exception | None = None
        startup = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Any]:
            from runtime.errors import ConfigError

            started = False
            try:
                async with startup(app) as state:
                    started = True
                    yield state
            except ConfigError as exc:
                if not started:
                    self.config_error = exc
                raise

        app.router.lifespan_context = lifespan


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)
