"""The staff admin in a real browser, over data the demo, the programs and the monitors made.

Each test runs on both backends (the `community` fixture's parameters); screenshots of every
step land in var/test-artifacts/browser/<test>/, and any console error, uncaught exception or
5xx answer fails the test (tests/browser/conftest.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from runtime.supervision.demo import DEMO_TARIFF
from services.web.admin_site import INDEX_TITLE, SITE_HEADER, SITE_TITLE
from tests.browser.community import ANNA, BORIS, Community
from tests.browser.conftest import log_in

Shot = Callable[..., Path]

#: Models no program writes in the community's day, with the reason; their lists are walked,
#: their (absent) detail pages are not. A model missing here that has no rows fails the walk.
EMPTY_BY_DESIGN: dict[str, str] = {}


def admin_registry(community: Community) -> list[dict[str, str]]:
    """Every model registered with the admin site, asked of Django in the web's environment."""
    script = (
        "import json, django; django.setup()\n"
        "from django.contrib import admin\n"
        "print(json.dumps([{'app': m._meta.app_label, 'model': m._meta.model_name,"
        " 'plural': str(m._meta.verbose_name_plural)} for m in admin.site._registry]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**community.environ, "DJANGO_SETTINGS_MODULE": "services.web.settings"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    models: list[dict[str, str]] = json.loads(done.stdout.strip().splitlines()[-1])
    return models


def visit(page: Page, path: str) -> None:
    response = page.goto(path)
    assert response is not None, path
    assert response.status == 200, f"{path}: {response.status}"


def test_staff_login(anon_page: Page, shot: Shot, staff_credentials: tuple[str, str]) -> None:
    page = anon_page
    page.goto("/overview/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/overview/"))
    expect(page.locator("#site-name")).to_have_text(SITE_HEADER)
    shot("login form")

    page.fill("#id_username", staff_credentials[0])
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")
    expect(page.locator(".errornote")).to_be_visible()
    shot("wrong password")

    log_in(page, *staff_credentials)
    expect(page).to_have_title(f"{INDEX_TITLE} | {SITE_TITLE}")
    expect(page.locator("#site-name")).to_have_text(SITE_HEADER)
    expect(page.locator("#content h1")).to_have_text(INDEX_TITLE)
    shot("admin index")


def test_overview(staff_page: Page, shot: Shot) -> None:
    page = staff_page
    visit(page, "/overview/")
    shot("overview")
    expect(page.locator("#site-name")).to_have_text(SITE_HEADER)
    assert "Django" not in page.content()
    # Three members: Anna renewed, Boris ran out, Vera never paid.
    members = page.locator("#members")
    for state in ("active", "expired", "без подписки"):
        expect(members.locator("tr", has_text=state)).to_contain_text("1")
    # The demo tariff paid by Anna and Boris, and Anna's renewal.
    revenue = page.locator("#revenue tr", has_text="RUB")
    expect(revenue).to_contain_text(f"{3 * DEMO_TARIFF[2] / 100:.2f}".replace(".", ","))
    expect(revenue).to_contain_text("платежей: 3")
    expect(page.locator("#outbox")).to_contain_text("sent")
    # Every monitor ran once and wrote its health file.
    monitors = page.locator("#monitors")
    for name in ("notifymonitor", "monthly_anket", "parse_messages", "tsmonitor"):
        expect(monitors.locator("tr", has_text=name).first).to_be_visible()
    page.click("text=Администрирование")
    expect(page).to_have_url(re.compile(r"/admin/$"))


def test_every_model_list_and_detail(
    staff_page: Page, shot: Shot, community: Community, live_web: str
) -> None:
    page = staff_page
    registry = admin_registry(community)
    assert len(registry) >= 20, registry
    visit(page, "/admin/")
    index_links = {
        str(link.get_attribute("href")) for link in page.locator("#content-main a").all()
    }
    empty = set()
    for entry in registry:
        changelist = f"/admin/{entry['app']}/{entry['model']}/"
        assert changelist in index_links, f"{changelist} is not on the admin index"
        visit(page, changelist)
        expect(page.locator("#content h1")).to_be_visible()
        shot(f"{entry['model']} list")
        # Where staff may add (tariffs, events, rules, logins), the empty form renders too.
        add_links = page.locator("#content-main a.addlink")
        if add_links.count():
            add_links.first.click()
            expect(page).to_have_url(re.compile(rf"/{entry['model']}/add/$"))
            expect(page.locator("#content-main form")).to_be_visible()
            shot(f"{entry['model']} add form")
            visit(page, changelist)
        rows = page.locator("#result_list tbody tr")
        if rows.count() == 0:
            empty.add(entry["model"])
            continue
        detail = rows.first.locator("th a, td a").first
        href = str(detail.get_attribute("href"))
        assert re.search(rf"/admin/{entry['app']}/{entry['model']}/\d+/change/", href), href
        detail.click()
        page.wait_for_load_state()
        expect(page).to_have_url(re.compile(rf"/{entry['model']}/\d+/change/$"))
        expect(page.locator("#content h1")).to_be_visible()
        expect(page.locator("#site-name")).to_have_text(SITE_HEADER)
        shot(f"{entry['model']} detail")
    assert empty == set(EMPTY_BY_DESIGN), f"models without rows: {sorted(empty)}"


def test_payment_and_provider_event_pages_show_their_json(
    staff_page: Page, shot: Shot, community: Community
) -> None:
    page = staff_page
    facts = community.facts
    visit(page, f"/admin/domain/payment/{facts['payment_id']}/change/")
    expect(page.locator(".field-metadata")).to_contain_text(str(ANNA))
    shot("payment detail")
    visit(page, f"/admin/domain/providerevent/{facts['provider_event_id']}/change/")
    expect(page.locator(".field-payload")).to_contain_text(facts["provider_payment_id"])
    shot("provider event detail")


def test_member_search_and_filters(staff_page: Page, shot: Shot) -> None:
    page = staff_page
    visit(page, "/admin/domain/member/")
    results = page.locator("#result_list tbody")
    expect(results.locator("tr")).to_have_count(3)

    page.fill("#searchbar", str(BORIS))
    page.press("#searchbar", "Enter")
    expect(results.locator("tr")).to_have_count(1)
    expect(results).to_contain_text("Boris")
    shot("search by telegram id")

    visit(page, "/admin/domain/member/")
    page.locator("#changelist-filter").get_by_role("link", name="active", exact=True).click()
    expect(page).to_have_url(re.compile(r"subscription__status__exact=active"))
    expect(results.locator("tr")).to_have_count(1)
    expect(results).to_contain_text("Anna")
    shot("filter: active subscription")


def test_payment_search_and_filters(staff_page: Page, shot: Shot, community: Community) -> None:
    page = staff_page
    provider_id = community.facts["provider_payment_id"]
    visit(page, "/admin/domain/payment/")
    results = page.locator("#result_list tbody")
    page.locator("#changelist-filter").get_by_role("link", name="succeeded", exact=True).click()
    expect(page).to_have_url(re.compile(r"status__exact=succeeded"))
    expect(results).to_contain_text(provider_id)
    shot("filter: succeeded")

    page.locator("#changelist-filter").get_by_role("link", name="canceled", exact=True).click()
    expect(page.locator("#result_list")).to_have_count(0)
    shot("filter: canceled (none)")

    visit(page, "/admin/domain/payment/")
    page.fill("#searchbar", provider_id)
    page.press("#searchbar", "Enter")
    expect(results.locator("tr")).to_have_count(1)
    expect(results).to_contain_text(provider_id)
    shot("search by YooKassa id")

    # The past 7 days, not today: "today" is Moscow's, and a community built before Moscow's
    # midnight had its payment outside "today" when the filter ran after it (CI at 21:05 UTC).
    visit(page, "/admin/domain/payment/")
    page.locator("#changelist-filter").get_by_role("link", name="Последние 7 дней").first.click()
    expect(results).to_contain_text(provider_id)
    shot("filter: created in the past 7 days")


def test_outbox_requeue_action(staff_page: Page, shot: Shot, community: Community) -> None:
    page = staff_page
    dead = community.facts["dead_outbox_id"]
    visit(page, "/admin/domain/outboxmessage/?status__exact=dead")
    row = page.locator("#result_list tbody tr", has=page.locator(f"input[value='{dead}']"))
    expect(row).to_contain_text("blocked")
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "requeue_dead_letters")
    shot("dead letter selected")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("В очередь снова: 1")
    shot("requeued")
    with community.db() as db:
        row_now: Any = db.fetchone("SELECT status, attempts FROM outbox WHERE id = ?", (dead,))
    assert (row_now["status"], row_now["attempts"]) == ("queued", 0)


def test_logout(staff_page: Page, shot: Shot) -> None:
    page = staff_page
    visit(page, "/admin/")
    page.click("#logout-form button")
    expect(page.locator("#content")).to_contain_text("Войти снова")
    shot("logged out")
    page.goto("/admin/domain/payment/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    shot("login required again")


@pytest.fixture(autouse=True)
def _no_leftover_state(community: Community) -> None:
    """The community is shared by the session: tests must not need each other's effects."""
    assert community.facts, "the community scenario did not finish"


def _viewer(community: Community, username: str, password: str) -> None:
    """A staff login that may only look at the outbox and the payments (`domos web createstaff`,
    then two view permissions given the way a superuser would, through Django's auth models)."""
    environ = {**community.environ, "VIEWER_PASSWORD": password}
    subprocess.run(
        [sys.executable, "-m", "runtime.cli", "web", "createstaff", "--username", username,
         "--password-env", "VIEWER_PASSWORD"],
        env=environ, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    script = (
        "import django; django.setup()\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.contrib.auth.models import Permission\n"
        f"user = get_user_model().objects.get(username={username!r})\n"
        "user.user_permissions.set(Permission.objects.filter(content_type__app_label='domain',"
        " codename__in=['view_outboxmessage', 'view_payment']))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script],
        env={**environ, "DJANGO_SETTINGS_MODULE": "services.web.settings"},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


def test_requeue_is_offered_only_with_the_change_permission(
    pages: Any, shot: Shot, community: Community
) -> None:
    _viewer(community, "viewer", "viewer-password-5d1c")
    page = pages.new_page()
    log_in(page, "viewer", "viewer-password-5d1c")
    # The index lists what the login may see, nothing else.
    links = {str(a.get_attribute("href")) for a in page.locator("#content-main a").all()}
    changelists = {link for link in links if re.fullmatch(r"/admin/\w+/\w+/", link)}
    assert changelists == {"/admin/domain/outboxmessage/", "/admin/domain/payment/"}, links
    visit(page, "/admin/domain/outboxmessage/")
    expect(page.locator("#result_list tbody tr").first).to_be_visible()
    expect(page.locator("select[name=action] option[value=requeue_dead_letters]")).to_have_count(0)
    shot("viewer: the outbox without requeue")
