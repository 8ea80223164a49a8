"""The payment settings, read once from the environment (runtime.config.Env names the variable
in every error).

payment_monitor and recurrent_payments take the whole `PaymentSettings` as their config; the API
repeats keys too, so it reads the one key window through `key_window`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Self

from runtime.config import Env, Settings

#: YooKassa keeps a key about 24 h from its first use, which is after the commit.
DEFAULT_KEY_WINDOW_H = 23.0
DEFAULT_KEY_WINDOW = timedelta(hours=DEFAULT_KEY_WINDOW_H)


def key_window(env: Env) -> timedelta:
    """How long after its commit a payment's Idempotence-Key is surely still remembered by the
    provider (PAYMENT_KEY_WINDOW_H)."""
    return timedelta(hours=env.number("PAYMENT_KEY_WINDOW_H", DEFAULT_KEY_WINDOW_H, minimum=0.01))


@dataclass(frozen=True)
class PaymentSettings:
    #: payment_monitor: when an open payment is first polled.
    poll_after: timedelta
    batch_size: int
    lease_s: float
    invite_ttl: timedelta
    #: How far ahead of a period's end the saved card is charged (both monitors).
    charge_ahead: timedelta
    #: How long a producer's own create call may take before the monitor repeats it.
    resend_after: timedelta
    key_window: timedelta
    #: recurrent_payments: how long after the period's end a soft decline is retried.
    renew_grace: timedelta
    renew_batch_size: int
    #: How long a claimed charge attempt stays with a process that may have died.
    renew_lease_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings | None = None) -> Self:
        env = Env(environ)
        return cls(
            poll_after=timedelta(minutes=env.number("PAYMENT_POLL_AFTER_MIN", 10.0)),
            batch_size=env.integer("PAYMENT_BATCH_SIZE", 50, minimum=1),
            lease_s=env.number("PAYMENT_LEASE_S", 120.0, minimum=1.0),
            invite_ttl=timedelta(hours=env.number("INVITE_LINK_TTL_H", 72.0, minimum=1.0)),
            charge_ahead=timedelta(hours=env.number("RENEW_CHARGE_AHEAD_H", 24.0)),
            # The producers' calls time out after 15 s; this leaves them room and retries.
            resend_after=timedelta(seconds=env.number("PAYMENT_RESEND_AFTER_S", 120.0)),
            key_window=key_window(env),
            renew_grace=timedelta(days=env.number("RENEW_GRACE_DAYS", 3.0)),
            renew_batch_size=env.integer("RENEW_BATCH_SIZE", 50, minimum=1),
            renew_lease_s=env.number("RENEW_LEASE_S", 120.0, minimum=1.0),
        )
