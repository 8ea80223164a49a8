"""botapi in-process (Flask test client) on both backends, against a real sandbox process."""

from __future__ import annotations

import asyncio
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
