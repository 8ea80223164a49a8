"""payments.client against a local HTTP server: the async and sync variants send the same
requests and read answers the same way."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from payments.client import Answer, SyncYooKassaClient, YooKassaClient
from runtime.config import Settings


class Recorder(ThreadingHTTPServer):
    seen: list[dict[str, Any]]
    #: (status, raw body, delay_s) of the next answers.
    answer: tuple[int, bytes, float]


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.server.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers),
                "body": json.loads(self.rfile.read(length)) if length else None,
            }
        )
        status, body, delay_s = self.server.answer
        if delay_s:
            threading.Event().wait(delay_s)
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Recorder]:
    server = Recorder(("127.0.0.1", 0), Handler)
    server.seen = []
    server.answer = (200, b'{"id": "p1", "status": "pending"}', 0.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def settings_for(url: str) -> Settings:
    return Settings.from_env(
        {"YOOKASSA_SHOP_ID": "shop", "YOOKASSA_SECRET_KEY": "s3cret", "YOOKASSA_API_URL": url}
    )


def url_of(server: Recorder) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"


def call(variant: str, url: str, method: str, *args: Any, timeout_s: float = 2.0) -> Answer:
    """`method` of the `variant` client, as its callers use it."""
    if variant == "sync":
        client = SyncYooKassaClient(settings_for(url), timeout_s=timeout_s)
        try:
            answer: Answer = getattr(client, method)(*args)
        finally:
            client.close()
        return answer

    async def run() -> Answer:
        client = YooKassaClient(settings_for(url), timeout_s=timeout_s)
        await client.open()
        try:
            answer: Answer = await getattr(client, method)(*args)
        finally:
            await client.close()
        return answer

    return asyncio.run(run())


VARIANTS = ["async", "sync"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_payment_id_is_quoted_into_one_path_segment(server: Recorder, variant: str) -> None:
    # Drift: the async client put a provider id into the path as it came, so an id read from a
    # webhook body could reach another resource ("../refunds", a query string).
    answer = call(variant, url_of(server), "get_payment", "p1/../../refunds?x=1")
    assert answer == (200, {"id": "p1", "status": "pending"})
    assert [seen["path"] for seen in server.seen] == ["/v3/payments/p1%2F..%2F..%2Frefunds%3Fx%3D1"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_create_sends_the_body_key_and_credentials(server: Recorder, variant: str) -> None:
    body = {"amount": {"value": "10.00", "currency": "RUB"}, "capture": True}
    assert call(variant, url_of(server), "create_payment", body, "key-1")[0] == 200
    [seen] = server.seen
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/v3/payments", body)
    assert seen["headers"]["Idempotence-Key"] == "key-1"
    token = base64.b64encode(b"shop:s3cret").decode()
    assert seen["headers"]["Authorization"] == f"Basic {token}"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (
            b'{"type": "error", "code": "invalid_request"}',
            {"type": "error", "code": "invalid_request"},
        ),
        (b"<html>bad gateway</html>", None),
        (b"", None),
        (b'["not", "an", "object"]', None),
        (b"\xff\xfe", None),
    ],
)
def test_an_answer_is_its_status_and_its_json_object(
    server: Recorder, variant: str, raw: bytes, body: dict[str, Any] | None
) -> None:
    server.answer = (502, raw, 0.0)
    assert call(variant, url_of(server), "get_payment", "p1") == (502, body)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_answer_is_an_unknown_outcome(server: Recorder, variant: str) -> None:
    server.answer = (200, b"{}", 1.0)
    assert call(variant, url_of(server), "get_payment", "p1", timeout_s=0.2) == (None, None)
    server.shutdown()
    server.server_close()
    assert call(variant, url_of(server), "create_payment", {}, "k") == (None, None)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_listing_sends_its_filters_as_the_query(server: Recorder, variant: str) -> None:
    server.answer = (200, b'{"type": "list", "items": []}', 0.0)
    params = {"created_at.gte": "2026-12-04T10:00:00.000Z", "limit": "100", "cursor": "a+b"}
    answer = call(variant, url_of(server), "list_payments", params)
    assert answer == (200, {"type": "list", "items": []})
    [seen] = server.seen
    assert (seen["method"], seen["body"]) == ("GET", None)
    assert seen["path"] == (
        "/v3/payments?created_at.gte=2026-12-04T10%3A00%3A00.000Z&limit=100&cursor=a%2Bb"
    )
