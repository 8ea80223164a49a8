"""Request metrics as a pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

The route label is the matched route's template (`/v1/subscriptions/{telegram_id}`), read from
the scope after routing; requests that match no route share the label `<unmatched>` so random
paths cannot create new series.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.metrics import UNMATCHED_ROUTE, record_http_request

UNMATCHED = UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, program: str) -> None:
        self.app = app
        self.program = program

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            record_http_request(
                program=self.program,
                route=_route_template(scope),
                method=scope["method"],
                status=status,
                duration_s=time.perf_counter() - started,
            )


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED
