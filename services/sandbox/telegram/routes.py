"""HTTP routes of the Bot API: `/bot<token>/<method>` and `/file/bot<token>/<file_path>`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import structlog
from aiohttp import web

from services.sandbox.faults import Fault, Faults
from services.sandbox.telegram.errors import TelegramApiError, not_found, unauthorized
from services.sandbox.telegram.methods import METHODS
from services.sandbox.telegram.params import read_params
from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import BotState

log = structlog.get_logger("sandbox.telegram")


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _refusal(fault: Fault) -> web.Response:
    """The answer of a "500" or "429" fault: the call is not processed."""
    if fault.mode == "429":
        body = {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        return _json(body, status=429)
    return _json(
        {"ok": False, "error_code": 500, "description": "Internal Server Error"}, status=500
    )


async def _process(svc: TelegramService, bot: BotState, request: web.Request) -> web.Response:
    handler = METHODS.get(request.match_info["method"].lower())
    if handler is None:
        raise not_found()
    params = await read_params(request)
    result = await handler(svc, bot, params)
    return _json({"ok": True, "result": result})


def add_routes(
    app: web.Application, svc_key: web.AppKey[TelegramService], faults_key: web.AppKey[Faults]
) -> None:
    async def call_method(request: web.Request) -> web.Response:
        svc = request.app[svc_key]
        bot = svc.world.bots.get(request.match_info["token"])
        fault: Fault | None = None
        try:
            if bot is None:
                raise unauthorized()
            fault = request.app[faults_key].take("telegram", request.match_info["method"])
            if fault is not None and fault.mode != "timeout":
                return _refusal(fault)
            response = await _process(svc, bot, request)
        except TelegramApiError as exc:
            response = _json(exc.envelope(), status=exc.code)
        if fault is not None:
            # "timeout": the call was processed (a sendMessage is delivered), but the answer
            # comes too late; a client that gives up and retries sends a second copy.
            log.info(
                "fault_timeout_held", method=request.match_info["method"], delay_s=fault.delay_s
            )
            await asyncio.sleep(fault.delay_s)
        return response

    async def download(request: web.Request) -> web.StreamResponse:
        svc = request.app[svc_key]
        if request.match_info["token"] not in svc.world.bots:
            return _json(unauthorized().envelope(), status=401)
        stored = svc.world.files_by_path.get(request.match_info["path"])
        if stored is None or stored.size > svc.config.max_download_bytes:
            return _json(not_found().envelope(), status=404)
        return web.Response(
            body=stored.content, content_type=stored.mime_type or "application/octet-stream"
        )

    app.router.add_route("*", "/bot{token}/{method}", call_method)
    app.router.add_get("/file/bot{token}/{path:.+}", download)
