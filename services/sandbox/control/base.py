"""What every control route shares: the error, the app keys, JSON in and out, field readers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from runtime.errors import DomosError
from services.sandbox.clock import Clock
from services.sandbox.config import SandboxConfig
from services.sandbox.faults import Faults
from services.sandbox.telegram import updates as users
from services.sandbox.telegram.errors import TelegramApiError
from services.sandbox.telegram.service import TelegramService
from services.sandbox.webhooks import WebhookSender
from services.sandbox.yookassa.errors import YooKassaApiError
from services.sandbox.yookassa.service import YooKassaService


class ControlError(DomosError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Keys:
    config: web.AppKey[SandboxConfig]
    clock: web.AppKey[Clock]
    faults: web.AppKey[Faults]
    sender: web.AppKey[WebhookSender]
    telegram: web.AppKey[TelegramService]
    yookassa: web.AppKey[YooKassaService]


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[Any]]

#: Method, path and handler of one JSON route.
Route = tuple[str, str, Handler]


def respond(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                parsed = await request.json()
            except ValueError:
                return respond({"error": "body must be JSON"}, 400)
            if not isinstance(parsed, dict):
                return respond({"error": "body must be a JSON object"}, 400)
            body = parsed
        try:
            result = await handler(request, body)
        except ControlError as exc:
            return respond({"error": str(exc)}, exc.status)
        except users.UserActionRefused as exc:
            return respond({"error": str(exc)}, 400)
        except TelegramApiError as exc:
            return respond({"error": exc.description}, exc.code)
        except YooKassaApiError as exc:
            return respond({"error": exc.description, **exc.body("control")}, exc.status)
        if isinstance(result, web.StreamResponse):
            return result
        return respond(result)

    return handle


def int_field(data: dict[str, Any] | Any, name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if value is None:
        raise ControlError(f"{name} is required")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be an integer") from None


def opt_int_field(data: Any, name: str) -> int | None:
    return None if data.get(name) is None else int_field(data, name)


def str_field(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name} is required (a string)")
    return value
