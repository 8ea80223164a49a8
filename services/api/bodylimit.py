"""A request body larger than API_MAX_BODY_BYTES is refused with 413, as a pure ASGI middleware.

uvicorn hands the application any body, however large. A declared `Content-Length` over the limit
is refused before the application runs; a chunked body is counted as it is read, and once past
the limit whatever the application would answer is replaced by the 413 (the application sees the
read fail and never gets the excess bytes).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import error_response


class BodyTooLarge(Exception):
    """Raised from `receive` once the body passed the limit (the application's read fails)."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        if not chunked:
            # A declared length is enforced by the server (h11/httptools stop at it); with
            # neither header the request has no body at all (a GET, say).
            await self.app(scope, receive, send)
            return
        received = 0
        too_large = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            # The failed read may surface as any error the application makes of it.
            if not too_large:
                raise
        if too_large:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "payload_too_large",
            f"the request body is larger than {self.max_bytes} bytes",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared Content-Length, and whether the body comes chunked."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked and declared is None
