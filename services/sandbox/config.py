"""Sandbox configuration: tokens, credentials, limits and retry schedules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: A syntactically valid token (aiogram checks the `<digits>:<secret>` shape); bot id 123456789.
DEFAULT_BOT_TOKEN = "123456789:AAFsandbox-default-token-for-tests"
DEFAULT_YOOKASSA_SHOP_ID = "100500"
DEFAULT_YOOKASSA_SECRET_KEY = "test_sandbox_secret_key"


@dataclass
class FloodLimits:
    """Telegram's flood limits. A rate of 0 switches that limit off.

    Token buckets: `per_chat_burst` messages may go to one chat at once, refilled at
    `per_chat_per_s`; groups also have a per-minute budget.
    """

    enabled: bool = True
    per_bot_per_s: float = 30.0
    per_bot_burst: int = 30
    per_chat_per_s: float = 1.0
    per_chat_burst: int = 3
    per_group_per_min: float = 20.0
    per_group_burst: int = 20

    def to_dict(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "per_bot_per_s": self.per_bot_per_s,
            "per_bot_burst": self.per_bot_burst,
            "per_chat_per_s": self.per_chat_per_s,
            "per_chat_burst": self.per_chat_burst,
            "per_group_per_min": self.per_group_per_min,
            "per_group_burst": self.per_group_burst,
        }


@dataclass
class SandboxConfig:
    bot_tokens: tuple[str, ...] = (DEFAULT_BOT_TOKEN,)
    yookassa_shop_id: str = DEFAULT_YOOKASSA_SHOP_ID
    yookassa_secret_key: str = DEFAULT_YOOKASSA_SECRET_KEY
    #: Where YooKassa notifications go; None sends none until the control API sets one.
    yookassa_webhook_url: str | None = None
    #: Base URL clients reach the sandbox at, for confirmation_url; None derives it per request.
    public_url: str | None = None
    limits: FloodLimits = field(default_factory=FloodLimits)
    #: Where users, chats, payments and counters survive a restart (services.sandbox.state_file);
    #: None keeps everything in memory only.
    state_file: Path | None = None
    #: Pauses between webhook attempts (both APIs); the last one repeats until `max_attempts`.
    webhook_retry_intervals_s: tuple[float, ...] = (1.0, 5.0, 30.0, 60.0, 300.0)
    webhook_max_attempts: int = 20
    webhook_timeout_s: float = 10.0
    #: How long a "timeout" fault holds the response back.
    fault_timeout_s: float = 60.0
    #: Telegram refuses getFile above this size.
    max_download_bytes: int = 20 * 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    idempotence_retention_s: float = 24 * 3600.0
