"""Settings of the API program, read from the environment (runtime.config.Env names the variable
in every error)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

from limits import RateLimitItem, parse
from limits.errors import ConfigurationError

from payments.settings import DEFAULT_KEY_WINDOW, key_window
from runtime.config import Env, Network, Secret, parse_networks
from runtime.errors import ConfigError

DEFAULT_PORT = 8001
#: A day, as Telegram's own examples suggest: a Mini App's initData is re-issued on every launch.
DEFAULT_AUTH_MAX_AGE_S = 86400
#: Bodies of this API are a few hundred bytes; 64 KiB leaves room and stops a flood of bytes.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
DEFAULT_MAX_CONCURRENCY = 256
DEFAULT_MEMBER_RATE = "60/minute"
DEFAULT_SOURCE_RATE = "600/minute"
DEFAULT_TRUSTED_PROXIES = parse_networks("API_TRUSTED_PROXIES", "127.0.0.1,::1")

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class ApiSettings:
    #: `X-API-Key` of the admin endpoints; None disables them (403).
    admin_key: Secret | None
    #: Server key of the token HMAC; None stores plain SHA-256 (a logged warning at start).
    token_hash_key: Secret | None
    #: Where YooKassa sends the payer back after the checkout page.
    payment_return_url: str
    #: Hosts a payment's `return_url` may point at (exact names, lower case).
    return_url_hosts: tuple[str, ...] = ("t.me",)
    #: Web origins (`https://host[:port]`) whose pages may call the API from a browser: the Mini
    #: App's, where it is served from a host of its own. None: no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    #: SHA-256 hex of each partner key -> the partner's name (API_PARTNER_KEYS).
    partner_keys: Mapping[str, str] = field(default_factory=dict)
    #: How old a Telegram proof (`auth_date`) may be.
    auth_max_age_s: int = DEFAULT_AUTH_MAX_AGE_S
    #: Requests per member, and per source address (callers without a partner key).
    member_rate: RateLimitItem = field(default_factory=lambda: parse(DEFAULT_MEMBER_RATE))
    source_rate: RateLimitItem = field(default_factory=lambda: parse(DEFAULT_SOURCE_RATE))
    #: `limits` storage of the counters: memory:// (per process) or e.g. async+redis://host.
    rate_limit_storage: str = "memory://"
    #: A request body larger than this is refused with 413 before it is read in full.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Connections and requests in flight at once; more get 503 from uvicorn.
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    #: Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips): the
    #: source every per-source rate limit counts. Loopback by default (`domos run`).
    trusted_proxies: tuple[Network, ...] = DEFAULT_TRUSTED_PROXIES
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
        return_url = env.url("PAYMENT_RETURN_URL", "https://t.me")
        return cls(
            admin_key=env.secret("API_ADMIN_KEY"),
            token_hash_key=env.secret("API_TOKEN_HASH_KEY"),
            payment_return_url=return_url,
            return_url_hosts=_hosts(env, return_url),
            cors_origins=_origins(env),
            partner_keys=_partner_keys(env),
            auth_max_age_s=env.integer("API_AUTH_MAX_AGE_S", DEFAULT_AUTH_MAX_AGE_S, minimum=1),
            member_rate=_rate(env, "API_RATE_LIMIT_MEMBER", DEFAULT_MEMBER_RATE),
            source_rate=_rate(env, "API_RATE_LIMIT_SOURCE", DEFAULT_SOURCE_RATE),
            rate_limit_storage=env.text("API_RATE_LIMIT_STORAGE", "memory://") or "memory://",
            max_body_bytes=env.integer("API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1024),
            max_concurrency=env.integer("API_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY, minimum=1),
            trusted_proxies=env.networks("API_TRUSTED_PROXIES") or DEFAULT_TRUSTED_PROXIES,
            provider_timeout_s=env.number("API_PROVIDER_TIMEOUT_S", 10.0, minimum=0.1),
            payment_key_window=key_window(env),
            host=env.text("API_HOST", "127.0.0.1") or "127.0.0.1",
            port=env.integer("API_PORT", DEFAULT_PORT, maximum=65535),
        )


def _hosts(env: Env, return_url: str) -> tuple[str, ...]:
    """PAYMENT_RETURN_URL_HOSTS (comma-separated), by default the host of PAYMENT_RETURN_URL."""
    default = urlsplit(return_url).hostname or ""
    raw = env.text("PAYMENT_RETURN_URL_HOSTS", default) or default
    hosts = tuple(dict.fromkeys(h.strip().lower() for h in raw.split(",") if h.strip()))
    for host in hosts:
        if not _HOST.match(host):
            raise ConfigError("PAYMENT_RETURN_URL_HOSTS", f"{host!r} is not a host name")
    if not hosts:
        raise ConfigError("PAYMENT_RETURN_URL_HOSTS", "needs at least one host")
    return hosts


def _origins(env: Env) -> tuple[str, ...]:
    """API_CORS_ORIGINS (comma-separated): exact origins, https (http for localhost only), no
    path; `*` is refused: any site could then make a member's browser call the API."""
    raw = env.text("API_CORS_ORIGINS") or ""
    origins = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        parts = urlsplit(entry)
        local = parts.hostname in ("localhost", "127.0.0.1")
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if (
            parts.scheme not in (("https", "http") if local else ("https",))
            or not parts.hostname
            or not _HOST.match(parts.hostname)
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
            or not port_ok
        ):
            raise ConfigError(
                "API_CORS_ORIGINS",
                f"{entry!r} is not an origin: https://host[:port], no path (http only for "
                "localhost)",
            )
        origins.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return tuple(dict.fromkeys(origins))


def _partner_keys(env: Env) -> dict[str, str]:
    """API_PARTNER_KEYS: `name:sha256hex,...`, the SHA-256 of each key, never the key itself."""
    raw = env.text("API_PARTNER_KEYS")
    keys: dict[str, str] = {}
    for entry in (raw or "").split(","):
        if not entry.strip():
            continue
        name, _, digest = entry.strip().partition(":")
        digest = digest.strip().lower()
        if not name.strip() or not _SHA256_HEX.match(digest):
            raise ConfigError(
                "API_PARTNER_KEYS", "each entry is NAME:SHA256HEX (64 hex digits of the key's hash)"
            )
        keys[digest] = name.strip()
    return keys


def _rate(env: Env, name: str, default: str) -> RateLimitItem:
    raw = env.text(name, default) or default
    try:
        return parse(raw)
    except (ValueError, ConfigurationError):
        raise ConfigError(
            name, f"must be like '60/minute' or '10 per second', got {raw!r}"
        ) from None
