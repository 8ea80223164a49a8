"""botapi in-process (Flask test client) on both backends, against a real sandbox process."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import async_database
from runtime.db.migrations import upgrade
from services.botapi.app import create_app
from services.botapi.settings import BotApiSettings
from tests.integration.api.processes import SandboxProcess, start_sandbox

SEND_TOKEN = "send-token-for-tests-0123456789"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    process = start_sandbox(tmp_path_factory.mktemp("sandbox") / "sandbox.log")
    yield process
    process.program.stop()


async def _migrate(settings: Settings) -> None:
    async with async_database(settings) as db:
        await upgrade(db, ["main"])


@pytest.fixture
def botapi_environ(
    database_environ_vars: dict[str, str], sandbox: SandboxProcess
) -> dict[str, str]:
    environ = {
        **database_environ_vars,
        **sandbox.yookassa_environ(),
        "DOMOS_PROGRAM": "botapi-test",
        "BOTAPI_SEND_TOKEN": SEND_TOKEN,
    }
    asyncio.run(_migrate(Settings.from_env(environ)))
    return environ


@pytest.fixture
def make_client(botapi_environ: dict[str, str], sync_db: Any) -> Iterator[Any]:
    """Factory: a Flask test client of botapi built with extra environment variables."""
    made: list[Any] = []

    def make(**extra: str) -> Any:
        environ = {**botapi_environ, **extra}
        app = create_app(Settings.from_env(environ), BotApiSettings.from_env(environ), db=sync_db)
        made.append(app)
        return app.test_client()

    yield make
    for app in made:
        app.extensions["domos"]["yookassa"].close()


@pytest.fixture
def client(make_client: Any) -> Any:
    return make_client()


def notification(event: str, object_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "notification", "event": event, "object": {"id": object_id, **fields}}


def our_payment(db: Any, provider_payment_id: str | None, **columns: Any) -> int:
    """A payments row of ours (with its member and tariff), as the API or the bot commits it."""
    user_id = db.fetchval(
        "INSERT INTO users (telegram_id, first_name) VALUES (?, 'Вера')"
        " ON CONFLICT (telegram_id) DO UPDATE SET first_name = excluded.first_name RETURNING id",
        (700_000_001,),
    )
    tariff_id = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('month', 'Месяц',"
        " 99000, 30) ON CONFLICT (code) DO UPDATE SET title = excluded.title RETURNING id"
    )
    values = {
        "provider_payment_id": provider_payment_id,
        "idempotence_key": f"test-{provider_payment_id or os.urandom(8).hex()}",
        "user_id": user_id,
        "tariff_id": tariff_id,
        "kind": "first",
        "amount_minor": 99000,
        **columns,
    }
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    return int(
        db.fetchval(
            f"INSERT INTO payments ({names}) VALUES ({marks}) RETURNING id", tuple(values.values())
        )
    )
