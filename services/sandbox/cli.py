"""`domos sandbox`: run the local Telegram Bot API + YooKassa API on one port."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from services.sandbox.config import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
)

DEFAULT_PORT = 8081


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox",
        help="run the local Telegram Bot API and YooKassa API stand-in",
        description=__doc__,
    )
    env = os.environ
    parser.add_argument("--host", default=env.get("SANDBOX_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("SANDBOX_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--bot-token",
        action="append",
        dest="bot_tokens",
        metavar="TOKEN",
        help="a valid bot token (repeatable); default: TELEGRAM_BOT_TOKEN or the test token",
    )
    parser.add_argument(
        "--webhook-url",
        default=env.get("SANDBOX_YOOKASSA_WEBHOOK_URL"),
        help="where YooKassa notifications are POSTed",
    )
    parser.add_argument(
        "--yookassa-shop-id", default=env.get("YOOKASSA_SHOP_ID", DEFAULT_YOOKASSA_SHOP_ID)
    )
    parser.add_argument(
        "--yookassa-secret-key",
        default=env.get("YOOKASSA_SECRET_KEY", DEFAULT_YOOKASSA_SECRET_KEY),
    )
    parser.add_argument(
        "--public-url",
        default=env.get("SANDBOX_PUBLIC_URL"),
        help="base URL clients use to reach the sandbox (for confirmation_url)",
    )
    parser.add_argument(
        "--no-limits", action="store_true", help="switch Telegram's flood limits off"
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="keep users, chats, bans, payments and ids across restarts in this JSON file"
        " (default: in memory only)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    # Heavy imports here so `domos --help` stays fast.
    import structlog
    from aiohttp import web

    from services.sandbox.app import build_app
    from services.sandbox.config import FloodLimits, SandboxConfig

    _configure_logging()
    tokens = args.bot_tokens or [os.environ.get("TELEGRAM_BOT_TOKEN") or DEFAULT_BOT_TOKEN]
    config = SandboxConfig(
        bot_tokens=tuple(dict.fromkeys(tokens)),
        yookassa_shop_id=args.yookassa_shop_id,
        yookassa_secret_key=args.yookassa_secret_key,
        yookassa_webhook_url=args.webhook_url,
        public_url=args.public_url.rstrip("/") if args.public_url else None,
        limits=FloodLimits(enabled=not args.no_limits),
        state_file=args.state_file,
    )
    _validate_tokens(config.bot_tokens)
    log = structlog.get_logger("sandbox")
    log.info(
        "sandbox_starting",
        host=args.host,
        port=args.port,
        bots=[token.partition(":")[0] for token in config.bot_tokens],
        yookassa_webhook_url=config.yookassa_webhook_url,
        state_file=str(config.state_file) if config.state_file else None,
    )
    # run_app stops gracefully on SIGINT and SIGTERM (supervisord's stop signal).
    web.run_app(
        build_app(config),
        host=args.host,
        port=args.port,
        print=None,
        shutdown_timeout=5.0,
        access_log=None,
    )
    log.info("sandbox_stopped")
    return 0


def _validate_tokens(tokens: tuple[str, ...]) -> None:
    from runtime.errors import ConfigError

    for token in tokens:
        left, sep, right = token.partition(":")
        if not (left.isdigit() and sep and right):
            raise ConfigError("--bot-token", "must look like <bot id digits>:<secret>")


def _configure_logging() -> None:
    from runtime.config import LogSettings
    from runtime.logging import configure_logging

    # LOG_FORMAT too: under `domos run` the sandbox's stdout is supervisord's pipe.
    configure_logging(LogSettings.from_env(), program=os.environ.get("DOMOS_PROGRAM", "sandbox"))


def main(argv: list[str] | None = None) -> int:
    """`python -m services.sandbox.cli`: the same command without the rest of the domos CLI."""
    parser = argparse.ArgumentParser(prog="sandbox")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    args = parser.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    from runtime.errors import DomosError

    try:
        code: int = args.handler(args)
    except DomosError as exc:
        print(f"sandbox: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
