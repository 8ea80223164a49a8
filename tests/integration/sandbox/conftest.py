"""A sandbox on a random loopback port per test, with aiogram and plain HTTP clients."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.sandbox import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
    FloodLimits,
    SandboxConfig,
    build_app,
)
from services.sandbox.clock import Clock

START = 1_750_000_000.0


@dataclass
class Sandbox:
    base: str
    http: aiohttp.ClientSession
    clock: Clock
    token: str = DEFAULT_BOT_TOKEN

    @property
    def bot_api(self) -> str:
        return f"{self.base}/bot{self.token}"

    def auth_header(self) -> dict[str, str]:
        raw = f"{DEFAULT_YOOKASSA_SHOP_ID}:{DEFAULT_YOOKASSA_SECRET_KEY}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, f"{self.base}/_sandbox{path}", json=body) as resp:
            data = await resp.json()
            assert resp.status == 200, data
            return data

    async def control_error(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, f"{self.base}/_sandbox{path}", json=body) as resp:
            return resp.status, await resp.json()

    async def raw(self, method: str, api_method: str, **kwargs: Any) -> tuple[int, Any]:
        """A Bot API call with a plain client, to look at the wire format."""
        async with self.http.request(method, f"{self.bot_api}/{api_method}", **kwargs) as resp:
            return resp.status, await resp.json()


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(
        limits=FloodLimits(enabled=False),
        webhook_retry_intervals_s=(0.05,),
        webhook_max_attempts=5,
        fault_timeout_s=0.5,
    )


@pytest.fixture
async def sandbox(sandbox_config: SandboxConfig) -> AsyncIterator[Sandbox]:
    # A frozen clock: tests move time explicitly (flood buckets, ban expiry, retention).
    clock = Clock()
    clock.freeze()
    clock.set(START)
    server = TestServer(build_app(sandbox_config, clock=clock), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield Sandbox(base=str(server.make_url("")).rstrip("/"), http=http, clock=clock)
    await server.close()


@pytest.fixture
async def bot(sandbox: Sandbox) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(sandbox.base))
    bot = Bot(sandbox.token, session=session)
    yield bot
    await bot.session.close()


@dataclass
class Receiver:
    """A webhook endpoint that fails its first `fail_first` calls with 500."""

    url: str = ""
    fail_first: int = 0
    calls: list[tuple[dict[str, str], Any]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def handle(request: web.Request) -> web.Response:
        state.calls.append((dict(request.headers), await request.json()))
        if len(state.calls) <= state.fail_first:
            return web.Response(status=500)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    yield state
    await server.close()
