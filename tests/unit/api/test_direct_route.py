"""DirectRoute binds a request exactly as FastAPI would: the same statuses and bodies for the
same requests, hostile ones above all, and the same OpenAPI."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import FastAPI, Path, Request

from services.api.direct_route import DirectRoute
from services.api.errors import install_error_handlers
from services.api.models import TELEGRAM_ID_MAX, TokenUse, TokenVerdict

TelegramId = Annotated[int, Path(ge=-TELEGRAM_ID_MAX, le=TELEGRAM_ID_MAX)]


async def read(telegram_id: TelegramId, request: Request) -> TokenVerdict:
    return TokenVerdict(valid=True, token_id=telegram_id, issued_to=request.method)


async def write(telegram_id: TelegramId, body: TokenUse, request: Request) -> TokenVerdict:
    return TokenVerdict(valid=True, token_id=telegram_id, issued_to=body.token, scope=body.used_by)


def build(route_class: type | None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    extra: dict[str, Any] = {} if route_class is None else {"route_class_override": route_class}
    app.router.add_api_route(
        "/r/{telegram_id}", read, methods=["GET"], response_model=TokenVerdict, **extra
    )
    app.router.add_api_route(
        "/w/{telegram_id}",
        write,
        methods=["POST"],
        response_model=TokenVerdict,
        status_code=201,
        **extra,
    )
    return app


class Client:
    """A synchronous call into the app over httpx's ASGI transport."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def request(
        self, method: str, path: str, content: bytes | None = None, headers: Any = None
    ) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
                return await http.request(method, path, content=content, headers=headers)

        return anyio.run(call)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


FASTAPI, DIRECT = Client(build(None)), Client(build(DirectRoute))
JSON = {"content-type": "application/json"}
REQUESTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("GET", "/r/42", None, {}),
    ("GET", "/r/-100123", None, {}),
    ("GET", "/r/4.5", None, {}),
    ("GET", "/r/1e3", None, {}),
    ("GET", "/r/abc", None, {}),
    ("GET", f"/r/{TELEGRAM_ID_MAX + 1}", None, {}),
    ("GET", "/r/99999999999999999999999999", None, {}),
    ("GET", "/r/%20", None, {}),
    ("POST", "/w/7", b'{"token": "t", "used_by": "me"}', JSON),
    ("POST", "/w/7", b'{"token": "t"}', {"content-type": "application/vnd.api+json"}),
    ("POST", "/w/7", b'{"token": "t"}', {"content-type": "application/json; charset=utf-8"}),
    ("POST", "/w/7", b'{"token": "t"}', {"content-type": "text/plain"}),
    ("POST", "/w/7", b'{"token": "t"}', {}),
    ("POST", "/w/7", b"", JSON),
    ("POST", "/w/7", b"{", JSON),
    ("POST", "/w/7", b'{"token": "t",}', JSON),
    ("POST", "/w/7", b"[]", JSON),
    ("POST", "/w/7", b"null", JSON),
    ("POST", "/w/7", b'"token"', JSON),
    ("POST", "/w/7", b"{}", JSON),
    ("POST", "/w/7", b'{"token": ""}', JSON),
    ("POST", "/w/7", b'{"token": 5}', JSON),
    ("POST", "/w/7", b'{"token": "' + b"x" * 300 + b'"}', JSON),
    ("POST", "/w/7", b'{"token": "t", "extra": 1}', JSON),
    ("POST", "/w/7", b'{"token": "t", "used_by": {"a": [1]}}', JSON),
    ("POST", "/w/7", b'{"token": "nul\\u0000"}', JSON),
    ("POST", "/w/7", b"\xff\xfe", JSON),
    ("POST", "/w/7", b"X\xa0\xff\xfe\x80", JSON),
    ("POST", "/w/7", b'{"token": "\xc3\x28"}', JSON),
    ("POST", "/w/x", b"{}", JSON),
]


@pytest.mark.parametrize(("method", "path", "body", "headers"), REQUESTS)
def test_a_direct_route_answers_as_fastapi_does(
    method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> None:
    expected = FASTAPI.request(method, path, content=body, headers=headers)
    got = DIRECT.request(method, path, content=body, headers=headers)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert got.headers["content-type"] == expected.headers["content-type"]


def test_the_cases_cover_success_and_refusal() -> None:
    statuses = {DIRECT.request(m, p, content=b, headers=h).status_code for m, p, b, h in REQUESTS}
    assert statuses == {200, 201, 422}


def test_the_openapi_is_the_same() -> None:
    assert DIRECT.get("/openapi.json").json() == FASTAPI.get("/openapi.json").json()


def test_a_parameter_it_cannot_bind_is_refused_at_start_up() -> None:
    async def with_query(limit: int) -> TokenVerdict:
        raise AssertionError("never called")

    app = FastAPI()
    with pytest.raises(TypeError, match="cannot bind parameter 'limit'"):
        app.router.add_api_route("/q", with_query, route_class_override=DirectRoute)
