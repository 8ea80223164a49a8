"""A Mini App served from a host of its own, in chromium: its page calls the API from the
member's browser (a preflight, then the member's status and a checkout), which CORS allows for
API_CORS_ORIGINS only. Real programs: `domos api` over SQLite, the sandbox as YooKassa, and a
static page on another origin."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http import server as http_server
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from runtime.telegram_proof import mini_app_authorization
from tests.conftest import database_environ
from tests.integration.api.processes import Program, start_api, start_sandbox
from tests.ports import free_port

BOT_TOKEN = "123456789:browser-mini-app-token-abcdefghijkl"
MEMBER = 5_550_001

#: The page's call of the API, as a Mini App's script makes it; what it could read.
CALL = """async ([api, authorization]) => {
    const seen = {};
    try {
        const status = await fetch(api + "/v1/subscriptions/MEMBER",
                                   {headers: {Authorization: authorization}});
        seen.status = [status.status, await status.json()];
        const payment = await fetch(api + "/v1/payments", {
            method: "POST",
            headers: {Authorization: authorization, "Content-Type": "application/json",
                      "Idempotence-Key": "browser-tap-1"},
            body: JSON.stringify({telegram_id: MEMBER, tariff_code: "month"}),
        });
        seen.payment = [payment.status, await payment.json()];
    } catch (error) {
        seen.error = String(error);
    }
    return seen;
}""".replace("MEMBER", str(MEMBER))


class _Page(http_server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Mini App's page, on http://localhost:PORT (the API is on 127.0.0.1: another
    origin)."""
    root = tmp_path_factory.mktemp("mini_app_site")
    (root / "index.html").write_text("<!doctype html><title>Mini App</title><p>Оплата</p>")
    page_server = http_server.ThreadingHTTPServer(
        ("127.0.0.1", free_port()), partial(_Page, directory=str(root))
    )
    threading.Thread(target=page_server.serve_forever, daemon=True).start()
    yield f"http://localhost:{page_server.server_port}"
    page_server.shutdown()
    page_server.server_close()


@pytest.fixture(scope="module")
def environ(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """SQLite upgraded by `domos db upgrade`, a member and a tariff, the sandbox running."""
    tmp = tmp_path_factory.mktemp("mini_app_api")
    sandbox = start_sandbox(tmp / "sandbox.log")
    environ = {
        **database_environ("sqlite", str(tmp / "data")),
        **sandbox.yookassa_environ(),
        "DOMOS_PROGRAM": "api-browser-test",
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "PAYMENT_RETURN_URL": "https://t.me/domos_bot",
    }
    subprocess.run(
        [sys.executable, "-m", "runtime.cli", "db", "upgrade"],
        env={**os.environ, **environ},
        check=True,
        capture_output=True,
        timeout=120,
    )
    with sqlite3.connect(tmp / "data/bot/tgbot/databases/data.db") as conn:
        conn.execute("INSERT INTO users (telegram_id, first_name) VALUES (?, 'Агент')", (MEMBER,))
        conn.execute(
            "INSERT INTO tariffs (code, title, price_minor, period_days, is_active)"
            " VALUES ('month', 'Месяц', 99000, 30, 1)"
        )
    yield environ
    sandbox.program.stop()


def _api(environ: dict[str, str], log: Path, **settings: str) -> Iterator[Program]:
    program = start_api(environ, log, **settings)
    yield program
    assert program.stop() == 0, program.logs()


@pytest.fixture
def api_for_the_site(environ: dict[str, str], site: str, tmp_path: Path) -> Iterator[Program]:
    yield from _api(environ, tmp_path / "api.log", API_CORS_ORIGINS=site)


@pytest.fixture
def api_for_nobody(environ: dict[str, str], tmp_path: Path) -> Iterator[Program]:
    yield from _api(environ, tmp_path / "api.log")


def _mini_app(browser: Browser, site: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(site + "/index.html")
    return page


def _call(page: Page, api: Program) -> dict[str, Any]:
    authorization = mini_app_authorization(BOT_TOKEN, MEMBER)
    seen: dict[str, Any] = page.evaluate(CALL, [api.base, authorization])
    return seen


def test_the_mini_app_on_its_own_host_pays_from_the_browser(
    browser: Browser, site: str, api_for_the_site: Program
) -> None:
    page = _mini_app(browser, site)
    try:
        seen = _call(page, api_for_the_site)
    finally:
        page.context.close()
    assert "error" not in seen, seen
    assert seen["status"] == [200, {**seen["status"][1], "status": "none"}]
    status, payment = seen["payment"]
    assert status == 201, json.dumps(payment)
    assert payment["confirmation_url"].startswith("http"), payment


def test_a_site_not_listed_cannot_read_the_api(
    browser: Browser, site: str, api_for_nobody: Program
) -> None:
    page = _mini_app(browser, site)
    try:
        seen = _call(page, api_for_nobody)
    finally:
        page.context.close()
    assert seen == {"error": "TypeError: Failed to fetch"}
