"""Hostile values in admin requests, on every registered admin, on both backends.

An outside tester found that a NUL (%00) in a list's filter made the admin answer 500 on
PostgreSQL ("PostgreSQL text fields cannot contain NUL (0x00) bytes"). The domain tables were
fixed on their own (4057954); Django's own admins (users, groups) and django-axes's (access
attempts, logs, failures) were not, nor the other ways a request's text reaches a query: the
autocomplete's term, a session cookie, a header django-axes stores.

Each page must answer the admin's own "wrong parameters" redirect (?e=1) for a list, a 400 or
the admin's usual answer elsewhere: never a 500, and no NUL ever reaches the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from tests.integration.web.logins import log_in

#: Path ids that are no key of any table, each with a NUL-free spelling the admin must handle.
NOT_A_KEY = ("abc", "1e5", "-1", "2147483648", "9223372036854775808", "99999999999999999999")


@pytest.fixture
def browser(staff: tuple[str, str]) -> Any:
    """A logged-in superuser's client that shows a server error as the 500 it answers."""
    from django.test import Client

    client = Client(raise_request_exception=False)
    assert log_in(client, staff[0], staff[1])
    return client


def answer(response: Any) -> str:
    """What a page answered: "e=1" for the admin's wrong-parameters redirect, "302 <where>" for
    another redirect, else the status code."""
    if response.status_code == 302:
        location = response["Location"]
        return "e=1" if location.endswith("?e=1") else f"302 {location}"
    return str(response.status_code)


@contextmanager
def no_nul_reaches_the_database() -> Iterator[None]:
    """Fails if any statement sent to any database alias carried a NUL."""
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    with ExitStack() as stack:
        captured = [stack.enter_context(CaptureQueriesContext(connections[a])) for a in connections]
        yield
    sent = [q["sql"] for c in captured for q in c.captured_queries if "\x00" in q["sql"]]
    assert sent == []


def registered() -> list[tuple[Any, Any, str]]:
    """(model, its admin, its list's URL) for every registered admin."""
    from django.contrib import admin

    models = [
        (model, model_admin, f"/admin/{model._meta.app_label}/{model._meta.model_name}/")
        for model, model_admin in admin.site._registry.items()
    ]
    labels = {model._meta.label for model, _, _ in models}
    # Django's and django-axes's admins are the ones the domain fix left out.
    assert {"auth.User", "auth.Group", "axes.AccessAttempt", "axes.AccessLog"} <= labels
    assert "axes.AccessFailureLog" in labels
    return models


def superuser_request(staff: tuple[str, str]) -> Any:
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(username=staff[0])
    return request


def test_a_nul_in_any_lists_parameters_is_the_admins_error_page(browser: Any) -> None:
    """On the old code Django's and django-axes's lists answered 500 on PostgreSQL (a NUL in a
    field's filter) or 200 with the NUL sent to SQLite; their search and ordering answered 200."""
    wrong = []
    with no_nul_reaches_the_database():
        for model, _, url in registered():
            queries = ["q=%00", "q=a%00b", "o=%00", "o=1.%00", "p=%00", "_facets=%00", "%00=1"]
            queries += [f"{field.name}=%00" for field in model._meta.concrete_fields]
            queries += [f"{field.name}__startswith=a%00" for field in model._meta.concrete_fields]
            for query in queries:
                response = browser.get(f"{url}?{query}")
                if answer(response) != "e=1" or response["Location"] != f"{url}?e=1":
                    wrong.append(f"{url}?{query}: {answer(response)}")
    assert wrong == []


def test_path_ids_that_are_no_key_answer_400_or_the_admins_no_such_object(
    browser: Any, staff: tuple[str, str]
) -> None:
    """A NUL in a path id is a 400 (on the old code: the no-such-object redirect, and the id
    unchecked for a text key). Ids that are not numbers, or beyond bigint, stay the admin's
    no-such-object redirect to the index (no query fails on either backend)."""
    from django.contrib.auth.models import User
    from django.contrib.contenttypes.models import ContentType

    request = superuser_request(staff)
    wrong = []
    with no_nul_reaches_the_database():
        for _, model_admin, url in registered():
            for object_id in ("%00", "1%00", "a%00b"):
                for page in ("", "change/", "history/", "delete/"):
                    response = browser.get(f"{url}{object_id}/{page}")
                    if answer(response) != "400":
                        wrong.append(f"{url}{object_id}/{page}: {answer(response)}")
            # Deleting a read-only table's row is refused before the row is looked up.
            deleted = "302 /admin/" if model_admin.has_delete_permission(request) else "403"
            for object_id in NOT_A_KEY:
                expected = {
                    "": f"302 {url}{object_id}/change/",
                    "change/": "302 /admin/",
                    "history/": "302 /admin/",
                    "delete/": deleted,
                }
                for page, answered in expected.items():
                    response = browser.get(f"{url}{object_id}/{page}")
                    if answer(response) != answered:
                        wrong.append(f"{url}{object_id}/{page}: {answer(response)}")
        # The admin's "view on site" shortcut: no such object.
        users = ContentType.objects.get_for_model(User).pk
        shortcuts = {f"/admin/r/{users}/%00/": "400", "/admin/auth/user/%00/password/": "400"}
        for object_id in NOT_A_KEY:
            shortcuts[f"/admin/r/{users}/{object_id}/"] = "404"
            shortcuts[f"/admin/r/{object_id}/1/"] = "404"
        for path, expected in shortcuts.items():
            response = browser.get(path)
            if answer(response) != expected:
                wrong.append(f"{path}: {answer(response)}")
    assert wrong == []


def test_a_nul_outside_a_list_is_a_400(browser: Any, staff: tuple[str, str]) -> None:
    """On the old code the autocomplete's term, a session cookie and the login's User-Agent or
    Accept (which django-axes stores) reached PostgreSQL: 500."""
    from axes.models import AccessAttempt, AccessFailureLog
    from django.test import Client

    autocomplete = "/admin/autocomplete/?app_label={}&model_name={}&field_name={}&term=a%00"
    sources = [("auth", "user", "groups"), ("domain", "payment", "user")]
    wrong = []
    with no_nul_reaches_the_database():
        pages = [autocomplete.format(*source) for source in sources]
        pages += ["/admin/?x=%00", "/overview/?x=%00", "/admin/jsi18n/?%00", "/admin/auth/?a=%00"]
        for _, _, url in registered():
            pages.append(f"{url}add/?_changelist_filters=q%3D%00")
        for page in pages:
            response = browser.get(page)
            if answer(response) != "400":
                wrong.append(f"{page}: {answer(response)}")

        anonymous = Client(raise_request_exception=False, REMOTE_ADDR="203.0.113.80")
        if answer(anonymous.get("/admin/login/?next=/overview/%00")) != "400":
            wrong.append("login ?next=NUL")
        # A session key with a NUL, raw or as a quoted cookie's octal escape, on any page.
        forged = Client(raise_request_exception=False)
        for cookie in ('sessionid="abcdefgh\\000ijklmnop"', "sessionid=abcdefgh\x00ijklmnop"):
            for page in ("/overview/", "/admin/", "/admin/auth/user/"):
                response = forged.get(page, HTTP_COOKIE=cookie)
                if answer(response) != "400":
                    wrong.append(f"{cookie!r} on {page}: {answer(response)}")
        # Headers django-axes stores of a failed login.
        wrong_password = {"username": "nul-header", "password": "wrong", "next": "/overview/"}
        for header in ("HTTP_USER_AGENT", "HTTP_ACCEPT"):
            sender = Client(raise_request_exception=False, **{header: "probe\x00"})
            response = sender.post("/admin/login/", wrong_password)
            if answer(response) != "400":
                wrong.append(f"login with NUL in {header}: {answer(response)}")
    assert wrong == []
    assert not AccessAttempt.objects.filter(username="nul-header").exists()
    assert not AccessFailureLog.objects.filter(username="nul-header").exists()
