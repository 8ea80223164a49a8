"""Settings of botapi, read from the environment (every error names its variable)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.config import Env, Network, Secret, parse_networks
from services.botapi.ipallow import YOOKASSA_NETWORKS

DEFAULT_PORT = 6000


@dataclass(frozen=True)
class BotApiSettings:
    #: Bearer token of `POST /send`; None disables it (403).
    send_token: Secret | None
    #: Source networks allowed to call the webhook; None: no allow-list.
    webhook_allowlist: tuple[Network, ...] | None
    #: Proxies whose X-Forwarded-For is believed.
    trusted_proxies: tuple[Network, ...]
    provider_timeout_s: float = 5.0
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BotApiSettings:
        env = Env(os.environ if environ is None else environ)
        return cls(
            send_token=env.secret("BOTAPI_SEND_TOKEN"),
            webhook_allowlist=_allowlist(env.text("BOTAPI_WEBHOOK_ALLOWLIST")),
            trusted_proxies=env.networks("BOTAPI_TRUSTED_PROXIES"),
            provider_timeout_s=env.number("BOTAPI_PROVIDER_TIMEOUT_S", 5.0, minimum=0.1),
            host=env.text("BOTAPI_HOST", "127.0.0.1") or "127.0.0.1",
            port=env.integer("BOTAPI_PORT", DEFAULT_PORT, maximum=65535),
            workers=env.integer("BOTAPI_WORKERS", 2, minimum=1, maximum=64),
        )


def _allowlist(raw: str | None) -> tuple[Network, ...] | None:
    """Empty or `off`: none. `yookassa`: YooKassa's ranges; and CIDRs, comma-separated."""
    if raw is None or raw.lower() in ("off", "none", "false", "0"):
        return None
    networks: list[Network] = []
    rest = []
    for item in (part.strip() for part in raw.split(",")):
        if item.lower() == "yookassa":
            networks.extend(YOOKASSA_NETWORKS)
        elif item:
            rest.append(item)
    networks.extend(parse_networks("BOTAPI_WEBHOOK_ALLOWLIST", ",".join(rest)))
    return tuple(networks)
