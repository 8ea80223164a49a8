"""Settings of the API program, read from the environment (runtime.config.Env names the variable
in every error)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from payments.settings import DEFAULT_KEY_WINDOW, key_window
from runtime.config import Env, Secret

DEFAULT_PORT = 8001


@dataclass(frozen=True)
class ApiSettings:
    #: `X-API-Key` of the admin endpoints; None disables them (403).
    admin_key: Secret | None
    #: Server key of the token HMAC; None stores plain SHA-256 (a logged warning at start).
    token_hash_key: Secret | None
    #: Where YooKassa sends the payer back after the checkout page.
    payment_return_url: str
    #: Timeout of one YooKassa call while a client waits for its payment.
    provider_timeout_s: float = 10.0
    #: How long after a payment was committed its Idempotence-Key may still be repeated to
    #: YooKassa: payments.settings.key_window, the same as payment_monitor's.
    payment_key_window: timedelta = DEFAULT_KEY_WINDOW
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiSettings:
        env = Env(os.environ if environ is None else environ)
        return cls(
            admin_key=env.secret("API_ADMIN_KEY"),
            token_hash_key=env.secret("API_TOKEN_HASH_KEY"),
            payment_return_url=env.url("PAYMENT_RETURN_URL", "https://t.me"),
            provider_timeout_s=env.number("API_PROVIDER_TIMEOUT_S", 10.0, minimum=0.1),
            payment_key_window=key_window(env),
            host=env.text("API_HOST", "127.0.0.1") or "127.0.0.1",
            port=env.integer("API_PORT", DEFAULT_PORT, maximum=65535),
        )
