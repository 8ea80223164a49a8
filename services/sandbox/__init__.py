"""A local stand-in for the Telegram Bot API and the YooKassa API, speaking their wire protocols.

`build_app(SandboxConfig(...))` returns one aiohttp application that serves both APIs and the
control API (`/_sandbox/...`). `domos sandbox` runs it. Everything is in memory and deterministic.
"""

from __future__ import annotations

from services.sandbox.app import build_app
from services.sandbox.config import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
    FloodLimits,
    SandboxConfig,
)

__all__ = [
    "DEFAULT_BOT_TOKEN",
    "DEFAULT_YOOKASSA_SECRET_KEY",
    "DEFAULT_YOOKASSA_SHOP_ID",
    "FloodLimits",
    "SandboxConfig",
    "build_app",
]
