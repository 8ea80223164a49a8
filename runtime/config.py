"""Settings, built once from the environment.

Frozen dataclasses built by `from_env(environ)`. A missing or invalid value raises `ConfigError`
naming the variable. Secrets are wrapped in `Secret`, whose repr and str never show the value.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runtime.errors import ConfigError
from runtime.logical_databases import LOGICAL_DATABASES

DbType = Literal["sqlite", "postgres"]
LogFormat = Literal["auto", "json", "console"]
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "json", "console")

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
DEFAULT_YOOKASSA_API_URL = "https://api.yookassa.ru"


class Secret:
    """A value that must never be printed: repr, str and format show a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def mask_url_password(url: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


#: An IPv4 or IPv6 network (a single address is a /32 or /128 one).
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(name: str, raw: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR networks of variable `name`; empty items skipped."""
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(name, f"{item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


class Env:
    """Typed reads of one environment mapping; every error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self._environ.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def required(self, name: str, why: str) -> str:
        value = self.text(name)
        if value is None:
            raise ConfigError(name, f"is required {why}")
        return value

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(name, f"must be {bound}, got {value}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"must be a number, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(name, f"must be >= {minimum}, got {value}")
        return value

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return None if value is None else Secret(value)

    def url(self, name: str, default: str) -> str:
        value = self.text(name, default)
        assert value is not None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(name, f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def networks(self, name: str, default: str = "") -> tuple[Network, ...]:
        """Comma-separated IP addresses or CIDR networks (e.g. trusted proxies)."""
        return parse_networks(name, self.text(name, default) or "")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = (self.text(name, default) or default).lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value


@dataclass(frozen=True)
class DatabaseSettings:
    type: DbType
    data_dir: Path
    #: SQLite file per logical database (absolute paths).
    sqlite_paths: Mapping[str, Path]
    #: PostgreSQL connection URL; a Secret because it may hold a password.
    postgres_url: Secret | None
    pool_min_size: int = 1
    pool_max_size: int = 10
    pool_timeout_s: float = 10.0
    sqlite_busy_timeout_s: float = 5.0

    def sqlite_path(self, logical_db: str) -> Path:
        return self.sqlite_paths[logical_db]

    def require_postgres_url(self) -> str:
        if self.postgres_url is None:
            raise ConfigError("DATABASE_URL", "is required when DB_TYPE=postgres")
        return self.postgres_url.reveal()


@dataclass(frozen=True)
class TelegramSettings:
    bot_token: Secret | None
    api_url: str = DEFAULT_TELEGRAM_API_URL

    def require_token(self) -> str:
        if self.bot_token is None:
            raise ConfigError("TELEGRAM_BOT_TOKEN", "is required to talk to Telegram")
        return self.bot_token.reveal()


@dataclass(frozen=True)
class YooKassaSettings:
    shop_id: str | None
    secret_key: Secret | None
    api_url: str = DEFAULT_YOOKASSA_API_URL

    def require_credentials(self) -> tuple[str, str]:
        if self.shop_id is None:
            raise ConfigError("YOOKASSA_SHOP_ID", "is required to talk to YooKassa")
        if self.secret_key is None:
            raise ConfigError("YOOKASSA_SECRET_KEY", "is required to talk to YooKassa")
        return self.shop_id, self.secret_key.reveal()


@dataclass(frozen=True)
class LogSettings:
    """LOG_LEVEL and LOG_FORMAT: part of every program's Settings, and all that the programs
    needing nothing else read (the sandbox, supervisord's event listener)."""

    level: str = "info"
    #: `auto`: readable console lines on a terminal, JSON lines otherwise. Under supervisord a
    #: program's stdout is a pipe, so `domos run` resolves `auto` once, from its own terminal,
    #: and passes `json` or `console` on to every program.
    format: LogFormat = "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LogSettings:
        return cls.read(Env(os.environ if environ is None else environ))

    @classmethod
    def read(cls, env: Env) -> LogSettings:
        log_format = env.choice("LOG_FORMAT", "auto", LOG_FORMATS)
        return cls(
            level=env.choice("LOG_LEVEL", "info", LOG_LEVELS),
            format=next(choice for choice in LOG_FORMATS if choice == log_format),
        )


@dataclass(frozen=True)
class Settings:
    db: DatabaseSettings
    telegram: TelegramSettings
    yookassa: YooKassaSettings
    timezone: ZoneInfo
    #: Name of the running program (supervisord program name), bound into every log line.
    program: str = "domos"
    #: Port of this program's /metrics endpoint; None serves no metrics.
    metrics_port: int | None = None
    #: Address its listeners bind, /metrics included: loopback on a laptop (`domos run`), every
    #: interface in a container (the image sets DOMOS_BIND_HOST=0.0.0.0).
    bind_host: str = "127.0.0.1"
    log: LogSettings = LogSettings()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        env = Env(environ)
        metrics_port = env.integer("METRICS_PORT", 0, maximum=65535)
        return cls(
            db=_database_settings(env),
            telegram=TelegramSettings(
                bot_token=env.secret("TELEGRAM_BOT_TOKEN"),
                api_url=env.url("TELEGRAM_API_URL", DEFAULT_TELEGRAM_API_URL),
            ),
            yookassa=YooKassaSettings(
                shop_id=env.text("YOOKASSA_SHOP_ID"),
                secret_key=env.secret("YOOKASSA_SECRET_KEY"),
                api_url=env.url("YOOKASSA_API_URL", DEFAULT_YOOKASSA_API_URL),
            ),
            timezone=_timezone(env),
            program=env.text("DOMOS_PROGRAM", "domos") or "domos",
            metrics_port=metrics_port or None,
            bind_host=bind_host(environ),
            log=LogSettings.read(env),
        )


def bind_host(environ: Mapping[str, str]) -> str:
    """DOMOS_BIND_HOST, read alone by programs that need no other setting (the listener)."""
    return Env(environ).text("DOMOS_BIND_HOST", "127.0.0.1") or "127.0.0.1"


def _timezone(env: Env) -> ZoneInfo:
    name = env.text("DOMOS_TIMEZONE", "Europe/Moscow")
    assert name is not None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("DOMOS_TIMEZONE", f"unknown time zone {name!r}") from None


def _database_settings(env: Env) -> DatabaseSettings:
    db_type = env.choice("DB_TYPE", "sqlite", ("sqlite", "postgres"))
    data_dir = Path(env.text("DOMOS_DATA_DIR", "var/data") or "var/data").expanduser().absolute()
    sqlite_paths = {}
    for logical in LOGICAL_DATABASES.values():
        raw = env.text(logical.path_variable, logical.default_path)
        assert raw is not None
        path = Path(raw).expanduser()
        sqlite_paths[logical.name] = path if path.is_absolute() else data_dir / path
    postgres_url = _postgres_url(env)
    if db_type == "postgres" and postgres_url is None:
        raise ConfigError("DATABASE_URL", "is required when DB_TYPE=postgres (or POSTGRES_HOST)")
    pool_min = env.integer("DB_POOL_MIN_SIZE", 1, minimum=0)
    pool_max = env.integer("DB_POOL_MAX_SIZE", 10, minimum=1)
    if pool_max < pool_min:
        raise ConfigError("DB_POOL_MAX_SIZE", f"must be >= DB_POOL_MIN_SIZE ({pool_min})")
    return DatabaseSettings(
        type="postgres" if db_type == "postgres" else "sqlite",
        data_dir=data_dir,
        sqlite_paths=sqlite_paths,
        postgres_url=postgres_url,
        pool_min_size=pool_min,
        pool_max_size=pool_max,
        pool_timeout_s=env.number("DB_POOL_TIMEOUT_S", 10.0, minimum=0.1),
        sqlite_busy_timeout_s=env.number("SQLITE_BUSY_TIMEOUT_S", 5.0),
    )


def _postgres_url(env: Env) -> Secret | None:
    url = env.text("DATABASE_URL")
    if url is not None:
        if urlsplit(url).scheme not in ("postgres", "postgresql"):
            # Never echo the URL: it may carry a password.
            raise ConfigError("DATABASE_URL", "must be a postgresql:// URL")
        return Secret(url)
    host = env.text("POSTGRES_HOST")
    if host is None:
        return None
    port = env.integer("POSTGRES_PORT", 5432, minimum=1, maximum=65535)
    user = env.text("POSTGRES_USER", "postgres") or "postgres"
    password = env.text("POSTGRES_PASSWORD")
    database = env.text("POSTGRES_DB", "domos") or "domos"
    auth = quote(user, safe="")
    if password is not None:
        auth += ":" + quote(password, safe="")
    return Secret(f"postgresql://{auth}@{host}:{port}/{quote(database, safe='')}")
