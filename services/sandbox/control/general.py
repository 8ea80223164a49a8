"""Control routes of the whole sandbox: health, reset, the clock, faults, webhook deliveries."""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from services.sandbox.control.base import ControlError, Keys, Route, int_field, str_field
from services.sandbox.faults import FAULT_APIS, FaultMode

_FAULT_MODES: dict[str, FaultMode] = {"500": "500", "429": "429", "timeout": "timeout"}


def general_routes(keys: Keys) -> list[Route]:
    async def health(request: web.Request, data: dict[str, Any]) -> Any:
        return {"ok": True}

    async def reset(request: web.Request, data: dict[str, Any]) -> Any:
        await request.app[keys.sender].cancel_pending()
        request.app[keys.sender].reset_log()
        telegram = request.app[keys.telegram]
        telegram.reset()
        # A copy, as before: the fake's limits never alias the startup configuration.
        telegram.flood.configure(dataclasses.replace(request.app[keys.config].limits))
        request.app[keys.yookassa].reset()
        request.app[keys.faults].reset()
        request.app[keys.clock].reset()
        return {"ok": True}

    async def get_clock(request: web.Request, data: dict[str, Any]) -> Any:
        clock = request.app[keys.clock]
        return {"now": clock.now(), "iso": clock.iso_now(), "frozen": clock.frozen}

    async def set_clock(request: web.Request, data: dict[str, Any]) -> Any:
        clock = request.app[keys.clock]
        if data.get("freeze") is True:
            clock.freeze()
        elif data.get("freeze") is False:
            clock.unfreeze()
        if "set" in data:
            clock.set(float(data["set"]))
        if "advance_s" in data:
            clock.advance(float(data["advance_s"]))
        return await get_clock(request, data)

    async def get_faults(request: web.Request, data: dict[str, Any]) -> Any:
        return request.app[keys.faults].snapshot()

    async def set_faults(request: web.Request, data: dict[str, Any]) -> Any:
        api = str_field(data, "api", "yookassa")
        mode = _FAULT_MODES.get(str(data.get("mode", "500")))
        if api not in FAULT_APIS:
            raise ControlError(f"api must be one of {', '.join(FAULT_APIS)}")
        if mode is None:
            raise ControlError("mode must be 500, 429 or timeout")
        delay = float(data.get("delay_s", request.app[keys.config].fault_timeout_s))
        method = data.get("method")
        if method is not None and (api != "telegram" or not isinstance(method, str)):
            raise ControlError("method: a Bot API method name, for api telegram only")
        request.app[keys.faults].arm(api, mode, int_field(data, "count", 1), delay, method)
        return request.app[keys.faults].snapshot()

    async def deliveries(request: web.Request, data: dict[str, Any]) -> Any:
        api = request.query.get("api")
        return [d.to_dict() for d in request.app[keys.sender].list(api)]

    return [
        ("GET", "/_sandbox/health", health),
        ("POST", "/_sandbox/reset", reset),
        ("GET", "/_sandbox/clock", get_clock),
        ("POST", "/_sandbox/clock", set_clock),
        ("GET", "/_sandbox/faults", get_faults),
        ("POST", "/_sandbox/faults", set_faults),
        ("GET", "/_sandbox/webhooks", deliveries),
    ]
