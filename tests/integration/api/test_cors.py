"""A Mini App served from a host of its own calls the API from the member's browser: the
preflight and the responses carry CORS headers for API_CORS_ORIGINS only, never a cookie."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runtime.config import Settings
from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.integration.api.conftest import add_user, member

MINI_APP = "https://app.example.org"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type,idempotence-key",
}


async def _client(environ: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings.from_env(environ), ApiSettings.from_env(environ))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def browser(db: Any, api_environ: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    environ = {**api_environ, "API_CORS_ORIGINS": f"{MINI_APP}, http://localhost:5173"}
    async for client in _client(environ):
        yield client


@pytest.fixture
async def without_cors(db: Any, api_environ: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(api_environ):
        yield client


async def test_the_mini_apps_preflight_is_answered(browser: httpx.AsyncClient) -> None:
    response = await browser.options("/v1/payments", headers={"Origin": MINI_APP, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == MINI_APP
    assert set(response.headers["access-control-allow-methods"].split(", ")) == {
        "GET",
        "POST",
    }
    allowed = response.headers["access-control-allow-headers"].lower()
    assert {"authorization", "content-type", "idempotence-key"} <= set(allowed.split(", "))
    assert "access-control-allow-credentials" not in response.headers


async def test_the_mini_app_reads_the_members_answer(db: Any, browser: httpx.AsyncClient) -> None:
    _, telegram_id = await add_user(db)
    response = await browser.get(
        f"/v1/subscriptions/{telegram_id}", headers={"Origin": MINI_APP, **member(telegram_id)}
    )
    assert response.status_code == 200
    assert response.json()["status"] == "none"
    assert response.headers["access-control-allow-origin"] == MINI_APP


async def test_another_site_gets_no_cors(db: Any, browser: httpx.AsyncClient) -> None:
    evil = "https://app.example.org.evil.example"
    response = await browser.options("/v1/payments", headers={"Origin": evil, **PREFLIGHT})
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    _, telegram_id = await add_user(db)
    answer = await browser.get(
        f"/v1/subscriptions/{telegram_id}", headers={"Origin": evil, **member(telegram_id)}
    )
    assert "access-control-allow-origin" not in answer.headers  # the browser hides the body


async def test_without_origins_there_are_no_cors_headers(
    without_cors: httpx.AsyncClient,
) -> None:
    response = await without_cors.options("/v1/payments", headers={"Origin": MINI_APP, **PREFLIGHT})
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "value",
    [
        "*",
        "app.example.org",
        "http://app.example.org",
        "https://app.example.org/miniapp",
        "https://user@app.example.org",
        "https://app.example.org:0",
        "https://app.example.org:99999",
    ],
)
def test_origins_that_are_not_exact_https_origins_are_refused(value: str) -> None:
    from runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="API_CORS_ORIGINS"):
        ApiSettings.from_env({"API_CORS_ORIGINS": value})


def test_origins_are_normalised() -> None:
    settings = ApiSettings.from_env(
        {"API_CORS_ORIGINS": " https://App.Example.org:8443 ,https://app.example.org:8443,"}
    )
    assert settings.cors_origins == ("https://app.example.org:8443",)
    assert ApiSettings.from_env({}).cors_origins == ()
