"""One aiohttp application for the Bot API, the YooKassa API and the control API."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from services.sandbox import control
from services.sandbox.clock import Clock
from services.sandbox.config import SandboxConfig
from services.sandbox.faults import Faults
from services.sandbox.state_file import StateFile
from services.sandbox.telegram import routes as telegram_routes
from services.sandbox.telegram.service import TelegramService
from services.sandbox.webhooks import WebhookSender
from services.sandbox.yookassa import routes as yookassa_routes
from services.sandbox.yookassa.service import YooKassaService

CLOCK = web.AppKey("clock", Clock)
CONFIG = web.AppKey("config", SandboxConfig)
FAULTS = web.AppKey("faults", Faults)
SENDER = web.AppKey("sender", WebhookSender)
TELEGRAM = web.AppKey("telegram", TelegramService)
YOOKASSA = web.AppKey("yookassa", YooKassaService)

#: Room for Telegram's 50 MB uploads plus the multipart envelope.
CLIENT_MAX_SIZE = 52 * 1024 * 1024


def build_app(config: SandboxConfig | None = None, clock: Clock | None = None) -> web.Application:
    config = config or SandboxConfig()
    clock = clock or Clock()
    app = web.Application(client_max_size=max(CLIENT_MAX_SIZE, config.max_upload_bytes + 2**20))
    sender = WebhookSender(
        clock,
        timeout_s=config.webhook_timeout_s,
        retry_intervals_s=config.webhook_retry_intervals_s,
        max_attempts=config.webhook_max_attempts,
    )
    app[CONFIG] = config
    app[CLOCK] = clock
    app[FAULTS] = Faults()
    app[SENDER] = sender
    app[TELEGRAM] = TelegramService(config, clock, sender)
    app[YOOKASSA] = YooKassaService(config, clock, sender)
    telegram_routes.add_routes(app, TELEGRAM, FAULTS)
    yookassa_routes.add_routes(app, YOOKASSA, FAULTS)
    control.add_routes(app, control.Keys(CONFIG, CLOCK, FAULTS, SENDER, TELEGRAM, YOOKASSA))
    app.cleanup_ctx.append(_close_sender)
    if config.state_file is not None:
        state = StateFile(config.state_file, app[TELEGRAM], app[YOOKASSA])
        app.cleanup_ctx.append(state.keep)
    return app


async def _close_sender(app: web.Application) -> AsyncIterator[None]:
    yield
    for bot in app[TELEGRAM].world.bots.values():
        bot.webhook = None
    await app[SENDER].close()
