"""The browser harness: the admin served by `domos web` over data the real programs made, driven
by Playwright in Debian's chromium, on both backends.

Fixtures (names are stable; other browser tests build on them):
- `live_web`: base URL of a running `domos web` over this backend's community
  (tests/browser/community.py: the demo, the monitors, a day of members and staff);
- `community`: that community (its environment, the facts the scenario produced, a DB handle);
- `staff_page`: a Playwright page logged in as a staff superuser (`staff_credentials`);
- `anon_page`: a page of a fresh browser context, not logged in;
- `shot`: `shot("name")` screenshots the page into the test's artifacts directory (numbered
  steps); every page also gets a last screenshot when the test ends;
- `artifacts_dir`: var/test-artifacts/browser/ (DOMOS_TEST_ARTIFACTS overrides it).

Every page collects console errors, uncaught exceptions and answers of 500 and above: any of
them fails the test at teardown, with the list.

The browser is the system's `chromium` (apt; never `playwright install`), launched headless with
no network side-traffic of its own.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    expect,
    sync_playwright,
)

from tests.browser.community import STAFF_PASSWORD, STAFF_USERNAME, Community, build_community

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The first test of each backend also pays for the community (about a minute of programs).
BROWSER_TEST_TIMEOUT_S = 600
#: How long one Playwright action or navigation may take on a loaded 2-core machine.
ACTION_TIMEOUT_MS = 30_000


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(BROWSER_TEST_TIMEOUT_S))
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("DOMOS_TEST_ARTIFACTS") or REPO / "var" / "test-artifacts")
    path = path / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


# Package scope, not session: Playwright's sync API runs an asyncio loop in this thread while it
# lives, and every pytest-asyncio test after the browser tests failed with "Runner.run() cannot
# be called from a running event loop" (659 errors in a full run). The community's programs stop
# with it too.
@pytest.fixture(
    scope="package",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def community(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Community]:
    backend: str = request.param
    pg_url = None
    if backend == "postgres":
        pg_url = request.getfixturevalue("make_pg_database")(
            template=request.getfixturevalue("pg_template")
        )
    yield from build_community(backend, tmp_path_factory.mktemp(f"browser-{backend}"), pg_url)


@pytest.fixture(scope="package")
def live_web(community: Community) -> str:
    """Base URL of the admin (`domos web` on a free port), without a trailing slash."""
    return community.web


@pytest.fixture(scope="package")
def staff_credentials() -> tuple[str, str]:
    """The superuser staff login the community was created with."""
    return STAFF_USERNAME, STAFF_PASSWORD


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    # expect() waits as long as an action may take: its 5 s default flakes on a busy machine.
    expect.set_options(timeout=ACTION_TIMEOUT_MS)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Problems:
    """What a page did wrong: console errors, uncaught exceptions, 5xx answers."""

    items: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.items.append(f"console error at {message.location.get('url')}: {message.text}")

    def page_error(self, error: Any) -> None:
        self.items.append(f"uncaught exception: {error}")

    def response(self, response: Response) -> None:
        if response.status >= 500:
            self.items.append(f"{response.status} from {response.request.method} {response.url}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


@dataclass
class Pages:
    """Opens pages in fresh contexts, watches them, screenshots them; checked at teardown."""

    browser: Browser
    base_url: str
    directory: Path
    problems: Problems = field(default_factory=Problems)
    pages: list[Page] = field(default_factory=list)
    steps: int = 0

    def new_page(self) -> Page:
        context = self.browser.new_context(
            base_url=self.base_url,
            locale="ru-RU",
            # The community's zone (DOMOS_TIMEZONE): the admin's date widgets warn otherwise.
            timezone_id="Europe/Moscow",
            viewport={"width": 1400, "height": 1000},
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(ACTION_TIMEOUT_MS)
        page = context.new_page()
        page.on("console", self.problems.console)
        page.on("pageerror", self.problems.page_error)
        page.on("response", self.problems.response)
        self.pages.append(page)
        return page

    def shot(self, page: Page, name: str) -> Path:
        self.steps += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.steps:02d}-{_slug(name)}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        for page in self.pages:
            if not page.is_closed():
                try:
                    self.shot(page, "last")
                finally:
                    page.context.close()


@pytest.fixture
def pages(
    browser: Browser,
    live_web: str,
    community: Community,
    artifacts_dir: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Pages]:
    directory = artifacts_dir / _slug(request.node.name)
    shutil.rmtree(directory, ignore_errors=True)  # only this run's steps, none of the last run's
    logged_before = len(community.server_errors())
    watched = Pages(browser, live_web, directory)
    yield watched
    watched.close()
    if watched.problems.items:
        logged = community.server_errors()[logged_before:]
        pytest.fail(
            "the browser saw problems:\n"
            + "\n".join(watched.problems.items)
            + "\nwhat the web admin logged meanwhile:\n"
            + ("\n".join(logged) or "(no error lines)")
        )


def log_in(page: Page, username: str, password: str) -> None:
    """Staff login through the admin's form; lands on the admin index."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")


@pytest.fixture
def anon_page(pages: Pages) -> Page:
    return pages.new_page()


@pytest.fixture
def staff_page(pages: Pages, staff_credentials: tuple[str, str]) -> Page:
    page = pages.new_page()
    log_in(page, *staff_credentials)
    return page


@pytest.fixture
def shot(pages: Pages) -> Callable[..., Path]:
    """`shot("step name")` screenshots the newest page (or `page=`) as the next numbered step."""

    def take(name: str, page: Page | None = None) -> Path:
        return pages.shot(page or pages.pages[-1], name)

    return take
