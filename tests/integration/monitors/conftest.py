"""Monitors against a real sandbox HTTP server and a migrated database, on both backends.

The sandbox runs in the test's event loop on a loopback port with its real clock and Telegram's
default flood limits; monitors are built with a real MonitorContext and ticked directly, so a test
controls exactly how many ticks run. Subprocess tests (SIGKILL) use `domos monitor` instead.

Databases are migrated once per session (creating and dropping a PostgreSQL database costs seconds
on a busy server): PostgreSQL tests share one database emptied before each test, SQLite tests get a
copy of a migrated data directory.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import structlog
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from payments.client import YooKassaClient
from runtime.config import Settings
from runtime.db import async_database
from runtime.db.migrations import upgrade
from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES
from runtime.monitor import Monitor, MonitorContext, SystemClock, build_config
from services.api.payments import PaymentService
from services.sandbox import DEFAULT_BOT_TOKEN, SandboxConfig, build_app
from tests.conftest import DB_BACKENDS, database_environ

_users = itertools.count(700_000_001)


@dataclass
class Sandbox:
    base: str
    http: aiohttp.ClientSession

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.base}/_sandbox{path}", json=body) as resp:
            data = await resp.json()
            assert resp.status == 200, data
            return data

    async def new_user(self) -> int:
        user_id = next(_users)
        await self.control("POST", "/telegram/users", {"user_id": user_id, "first_name": "Агент"})
        return user_id

    async def sent_to(self, chat_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.control(
            "GET", f"/telegram/sent?chat_id={chat_id}"
        )
        return result


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(webhook_retry_intervals_s=(0.05,), webhook_max_attempts=3)


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[Sandbox]:
    server = TestServer(build_app(sandbox_config), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Sandbox(base=str(server.make_url("")).rstrip("/"), http=http)
    await server.close()


def _migrate(environ: dict[str, str]) -> None:
    async def run() -> None:
        async with async_database(Settings.from_env(environ)) as db:
            await upgrade(db)

    asyncio.run(run())


@pytest.fixture(scope="session")
def migrated_pg_url(make_pg_database: Callable[..., str], pg_template: str) -> str:
    url = make_pg_database(template=pg_template)
    _migrate(database_environ("postgres", "unused", url))
    return url


@pytest.fixture(scope="session")
def migrated_sqlite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("monitors-template") / "data"
    _migrate(database_environ("sqlite", str(data_dir)))
    return data_dir


def empty_domain_tables(url: str) -> None:
    """DELETE (not TRUNCATE, which creates relation files and fsyncs); foreign keys off."""
    schemas = sorted({LOGICAL_DATABASES[name].pg_schema for name in DOMAIN_DATABASES})
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables"
            " WHERE schemaname = ANY(%s) AND tablename <> 'schema_migrations'",
            (schemas,),
        ).fetchall()
        conn.execute("SET LOCAL session_replication_role = replica")
        for (table,) in tables:
            conn.execute(f"DELETE FROM {table}")


@pytest.fixture(params=DB_BACKENDS)
def database_environ_vars(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Every domain database migrated: the session's PostgreSQL database emptied, or a fresh
    copy of the migrated SQLite files."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("migrated_pg_url")
        empty_domain_tables(url)
        return database_environ("postgres", str(tmp_path / "data"), url)
    shutil.copytree(request.getfixturevalue("migrated_sqlite_dir"), tmp_path / "data")
    return database_environ("sqlite", str(tmp_path / "data"))


@pytest.fixture
async def db(async_db: Any) -> Any:
    """The opened AsyncDatabase of each backend, every domain database migrated and empty."""
    return async_db


@pytest.fixture
def monitor_environ(
    database_environ_vars: dict[str, str], sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    environ = {
        **database_environ_vars,
        "TELEGRAM_API_URL": sandbox.base,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox.base,
        "YOOKASSA_SHOP_ID": "100500",
        "YOOKASSA_SECRET_KEY": "test_sandbox_secret_key",
    }
    return environ


class FixedClock(SystemClock):
    """Wall time a test sets (`at`) for the monitors' business logic; monotonic time runs on."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def time(self) -> float:
        return self.at.timestamp()


@dataclass
class Monitors:
    environ: dict[str, str]
    db: Any
    started: list[Monitor] = field(default_factory=list)

    async def start(self, cls: type[Monitor], clock: Any = None, **env: str) -> Any:
        environ = {**self.environ, **env}
        settings = Settings.from_env(environ)
        ctx = MonitorContext(
            settings=settings,
            db=self.db,
            log=structlog.get_logger(f"monitors.{cls.name}").bind(monitor=cls.name),
            clock=clock or SystemClock(),
            owner=f"test:{cls.name}:{len(self.started)}",
            stop_event=asyncio.Event(),
            config=build_config(cls, environ, settings),
        )
        monitor = cls(ctx)
        await monitor.setup()
        self.started.append(monitor)
        return monitor


@pytest.fixture
async def monitors(monitor_environ: dict[str, str], db: Any) -> AsyncIterator[Callable[..., Any]]:
    holder = Monitors(monitor_environ, db)
    # Settings reach a monitor through build_config only: nothing to patch in os.environ.
    yield holder.start
    for monitor in holder.started:
        await monitor.teardown()


@pytest.fixture
async def api_payments(db: Any, monitor_environ: dict[str, str]) -> AsyncIterator[PaymentService]:
    """The API's payment service with a short provider timeout: the sandbox's "timeout" fault
    then looks like an answer that never came."""
    yookassa = YooKassaClient(Settings.from_env(monitor_environ), timeout_s=0.3)
    await yookassa.open()
    yield PaymentService(db, yookassa, "https://t.me/domos_bot")
    await yookassa.close()


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def utcnow() -> datetime:
    return datetime.now(UTC)


logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
