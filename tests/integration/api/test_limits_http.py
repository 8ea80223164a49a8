"""The limits over real HTTP against a `domos api` process (uvicorn, httptools): a body past
API_MAX_BODY_BYTES is 413 (declared or chunked), more connections than API_MAX_CONCURRENCY get
503, and a member past their budget gets 429 with Retry-After."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runtime.config import Settings
from runtime.db import async_database
from runtime.db.migrations import upgrade
from tests.integration.api.conftest import PARTNER
from tests.integration.api.processes import Program, http, start_api

MEMBER_ID = 77


async def _prepare(environ: dict[str, str]) -> None:
    async with async_database(Settings.from_env(environ)) as db:
        await upgrade(db, ["main", "advert", "contract"])
        await db.execute("INSERT INTO users (telegram_id) VALUES (?)", (MEMBER_ID,))


@pytest.fixture
def limited_api(api_environ: dict[str, str], tmp_path: Path) -> Iterator[Program]:
    asyncio.run(_prepare(api_environ))
    program = start_api(
        api_environ,
        tmp_path / "api.log",
        API_MAX_BODY_BYTES="2048",
        API_MAX_CONCURRENCY="3",
        API_RATE_LIMIT_MEMBER="2/minute",
    )
    yield program
    assert program.stop() == 0, program.logs()


def _connection(program: Program) -> HTTPConnection:
    parts = urlsplit(program.base)
    return HTTPConnection(parts.hostname or "", parts.port, timeout=10)


def _post_chunks_past(program: Program, path: str, *, limit: int) -> tuple[int, bytes]:
    """POST a chunked body just past `limit` and stop there, the body unfinished; the answer.

    Stopping is what makes this deterministic: a server that refuses early closes the
    connection, and a client still sending then gets a reset that can discard the answer."""
    parts = urlsplit(program.base)
    host, port = parts.hostname or "", parts.port or 80
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        sent = 0
        while sent <= limit:
            chunk = b"x" * 1024
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        response = HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


def _answer(conn: HTTPConnection) -> tuple[int, dict[str, str], bytes]:
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


@pytest.mark.slow
def test_limits_over_http(limited_api: Program) -> None:
    # A declared body past the limit: refused before it is read.
    declared = _connection(limited_api)
    declared.request(
        "POST",
        "/v1/advert/tokens/verify",
        body=b'{"token": "' + b"a" * 4096 + b'"}',
        headers={"Content-Type": "application/json"},
    )
    status, _, body = _answer(declared)
    assert status == 413, body
    assert b"payload_too_large" in body
    declared.close()

    # A chunked body: counted as it arrives, refused once past the limit without waiting for
    # the rest (which never comes here).
    status, body = _post_chunks_past(limited_api, "/v1/advert/tokens/verify", limit=2048)
    assert status == 413, body
    assert b"payload_too_large" in body

    # A body within the limit is served as before.
    assert http("POST", limited_api.base + "/v1/advert/tokens/verify", {"token": "adv_x"})[0] == 200

    # The member's budget: two reads a minute, then 429 with Retry-After.
    url = f"{limited_api.base}/v1/subscriptions/{MEMBER_ID}"
    assert [http("GET", url, headers=PARTNER)[0] for _ in range(2)] == [200, 200]
    status, error = http("GET", url, headers=PARTNER)
    assert (status, error["error"]["code"]) == (429, "rate_limited")
    limited = _connection(limited_api)
    limited.request("GET", f"/v1/subscriptions/{MEMBER_ID}", headers=PARTNER)
    status, headers, _ = _answer(limited)
    assert status == 429
    assert 1 <= int(headers["retry-after"]) <= 60
    limited.close()

    # Three connections held open fill API_MAX_CONCURRENCY: the next request gets 503 at once.
    parts = urlsplit(limited_api.base)
    held = [socket.create_connection((parts.hostname, parts.port)) for _ in range(3)]
    try:
        status, _ = http("GET", limited_api.base + "/health", timeout_s=5)
        assert status == 503
    finally:
        for sock in held:
            sock.close()
    # Once the server has seen them close, it answers again.
    deadline = time.monotonic() + 5
    while (status := http("GET", limited_api.base + "/health")[0]) != 200:
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def _verify_as(program: Program, caller: str) -> int:
    """POST /v1/advert/tokens/verify (counted per source) as `caller` behind a proxy on
    loopback, which appends the caller to X-Forwarded-For."""
    headers = {"X-Forwarded-For": f"198.51.100.7, {caller}"}
    return http("POST", program.base + "/v1/advert/tokens/verify", {"token": "adv_x"}, headers)[0]


@pytest.mark.parametrize(
    ("trusted", "separate_budgets"),
    [("127.0.0.0/8", True), ("192.0.2.1", False)],
    ids=["proxy-trusted", "proxy-not-trusted"],
)
def test_the_source_budget_counts_the_caller_behind_a_trusted_proxy(
    api_environ: dict[str, str], tmp_path: Path, trusted: str, separate_budgets: bool
) -> None:
    """Behind a trusted proxy each caller has its own budget (the right-most forwarded address
    that is not a trusted proxy); behind any other, X-Forwarded-For is the caller's own claim
    and the proxy's address is the source."""
    asyncio.run(_prepare(api_environ))
    program = start_api(
        api_environ,
        tmp_path / "api.log",
        API_RATE_LIMIT_SOURCE="2/minute",
        API_TRUSTED_PROXIES=trusted,
    )
    try:
        assert [_verify_as(program, "203.0.113.1") for _ in range(3)] == [200, 200, 429]
        assert _verify_as(program, "203.0.113.2") == (200 if separate_budgets else 429)
    finally:
        assert program.stop() == 0, program.logs()
