"""The API in-process (lifespan and all) on both backends, against a real sandbox process."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from runtime.config import Settings
from runtime.db.migrations import upgrade
from runtime.telegram_proof import mini_app_authorization
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.integration.api.processes import SandboxProcess, start_sandbox

ADMIN_KEY = "admin-key-for-tests-0123456789"
HASH_KEY = "hash-key-for-tests-abcdef"
ADMIN = {"X-API-Key": ADMIN_KEY}
BOT_TOKEN = "123456789:api-tests-bot-token-abcdefghijklmnop"
#: A partner server's key; the API is given only its SHA-256 (API_PARTNER_KEYS).
PARTNER_KEY = "partner-key-for-tests-0123456789abcdef"
PARTNER = {"X-Partner-Key": PARTNER_KEY}


def member(telegram_id: int, *, auth_date: int | None = None) -> dict[str, str]:
    """The headers of a Mini App of member `telegram_id` (initData signed for BOT_TOKEN)."""
    return {"Authorization": mini_app_authorization(BOT_TOKEN, telegram_id, auth_date=auth_date)}


_telegram_ids = itertools.count(910_000_001)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = start_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.log")
    yield process
    process.program.stop()


@pytest.fixture
async def db(async_db: Any) -> Any:
    await upgrade(async_db, ["main", "advert", "contract"])
    return async_db


@pytest.fixture
def api_environ(database_environ_vars: dict[str, str], sandbox: SandboxProcess) -> dict[str, str]:
    return {
        **database_environ_vars,
        **sandbox.yookassa_environ(),
        "DOMOS_PROGRAM": "api-test",
        "API_ADMIN_KEY": ADMIN_KEY,
        "API_TOKEN_HASH_KEY": HASH_KEY,
        "PAYMENT_RETURN_URL": "https://t.me/domos_bot",
        "PAYMENT_RETURN_URL_HOSTS": "t.me,a.example,b.example",
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "API_PARTNER_KEYS": f"tests:{hashlib.sha256(PARTNER_KEY.encode()).hexdigest()}",
    }


@dataclass
class Api:
    #: Sends the partner key: acts for any member, as a partner server does.
    client: httpx.AsyncClient
    #: Sends no credentials: what anyone on the network can do.
    anonymous: httpx.AsyncClient
    app: Any

    @property
    def services(self) -> Any:
        return self.app.state.services


@pytest.fixture
async def api(db: Any, api_environ: dict[str, str]) -> AsyncIterator[Api]:
    app = create_app(Settings.from_env(api_environ), ApiSettings.from_env(api_environ))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        base = "http://api"
        async with (
            httpx.AsyncClient(transport=transport, base_url=base, headers=PARTNER) as client,
            httpx.AsyncClient(transport=transport, base_url=base) as anonymous,
        ):
            yield Api(client, anonymous, app)


# --- seeding ----------------------------------------------------------------------------------


async def add_user(db: Any) -> tuple[int, int]:
    """(users.id, telegram id) of a new member."""
    telegram_id = next(_telegram_ids)
    user_id = await db.fetchval(
        "INSERT INTO users (telegram_id, first_name) VALUES (?, 'Агент') RETURNING id",
        (telegram_id,),
    )
    return user_id, telegram_id


async def add_tariff(
    db: Any, code: str = "month", price_minor: int = 99000, active: bool = True
) -> int:
    tariff_id: int = await db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days, is_active)"
        " VALUES (?, ?, ?, 30, ?) RETURNING id",
        (code, f"Тариф {code}", price_minor, active),
    )
    return tariff_id


async def add_subscription(
    db: Any, user_id: int, tariff_id: int, status: str, end: datetime | None = None
) -> int:
    end = end or datetime.now(UTC) + timedelta(days=10)
    grace = end + timedelta(days=3) if status == "grace" else None
    sub_id: int = await db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, grace_until) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (user_id, tariff_id, status, end - timedelta(days=30), end, grace),
    )
    return sub_id
