"""`domos bot`: run the Telegram bot (long polling) until SIGTERM."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bot", help="run the Telegram bot (aiogram, long polling)", description=__doc__
    )
    from runtime.db.schema_recheck import add_recheck_option

    add_recheck_option(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from aiogram.exceptions import TelegramUnauthorizedError

    from runtime.errors import ConfigError
    from runtime.logging import configure_logging
    from runtime.metrics import serve_metrics
    from services.bot.app import run as run_bot
    from services.bot.config import BotSettings

    settings = BotSettings.from_env()
    configure_logging(settings.runtime)
    metrics = serve_metrics(settings.runtime.metrics_port, addr=settings.runtime.bind_host)
    try:
        asyncio.run(run_bot(settings, schema_recheck_s=args.schema_recheck))
    except TelegramUnauthorizedError as exc:
        # getMe at start-up answered 401: the token is wrong or revoked, which no restart fixes
        # (a configuration error: exit EX_CONFIG). Polling never raises it later; it retries.
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN", "Telegram refused the token (401 Unauthorized)"
        ) from exc
    finally:
        if metrics is not None:
            metrics.close()
    return 0
