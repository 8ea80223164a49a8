"""The API's lifespan over a schema behind its code: it does not finish starting (so uvicorn
does not listen) until `domos db upgrade` has run, then serves. In process, on both backends,
re-checking every 0.05 s (`schema_gate.DEFAULT_RECHECK_S`, which the lifespan reads)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from runtime.config import Settings
from runtime.db import async_database, schema_gate
from runtime.db.migrations import DEFAULT_SCHEMA_ROOT, discover, upgrade
from services.api.app import create_app
from services.api.settings import ApiSettings

NEWEST = discover("main")[-1]
API_DATABASES = ["main", "advert", "contract"]


@pytest.fixture
def environ(database_environ_vars: dict[str, str]) -> dict[str, str]:
    return {
        **database_environ_vars,
        "DOMOS_PROGRAM": "api-test",
        "TELEGRAM_BOT_TOKEN": "123456789:schema-gate-tests-bot-token-abcdefgh",
        "YOOKASSA_API_URL": "http://127.0.0.1:9",
        "YOOKASSA_SHOP_ID": "100001",
        "YOOKASSA_SECRET_KEY": "test_schema_gate",
    }


@pytest.fixture
async def behind(environ: dict[str, str], tmp_path: Path) -> AsyncIterator[Any]:
    root = tmp_path / "schema"
    shutil.copytree(DEFAULT_SCHEMA_ROOT, root, ignore=shutil.ignore_patterns("*.md"))
    (root / "main" / NEWEST.path.name).unlink()
    async with async_database(Settings.from_env(environ)) as db:
        await upgrade(db, API_DATABASES, schema_root=root)
        yield db


async def test_the_api_starts_serving_only_once_the_schema_is_upgraded(
    behind: Any, environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(schema_gate, "DEFAULT_RECHECK_S", 0.05)
    app = create_app(Settings.from_env(environ), ApiSettings.from_env(environ))
    started = asyncio.Event()
    leave = asyncio.Event()

    async def run_lifespan() -> None:
        async with app.router.lifespan_context(app):
            started.set()
            await leave.wait()

    with capture_logs() as logs:
        lifespan = asyncio.create_task(run_lifespan())
        try:
            await asyncio.sleep(0.5)  # ten re-checks
            assert not started.is_set()
            behind_lines = [line for line in logs if line["event"] == "schema_behind"]
            assert len(behind_lines) == 1
            assert behind_lines[0]["missing"] == [f"main/{NEWEST.version:04d}_{NEWEST.name}"]
            assert not [line for line in logs if line["event"] == "api_started"]

            await upgrade(behind, ["main"])
            await asyncio.wait_for(started.wait(), 5)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                health = await client.get("/health")
            assert health.status_code == 200
        finally:
            leave.set()
            await asyncio.wait_for(lifespan, 10)
    events = [line["event"] for line in logs]
    assert events.index("schema_ready") < events.index("api_started")
