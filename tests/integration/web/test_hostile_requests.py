"""Hostile values in admin requests, on every registered admin, on both backends.

An outside tester found that a NUL (%00) in a list's filter made the admin answer 500 on
PostgreSQL ("PostgreSQL text fields cannot contain NUL (0x00) bytes"). The domain tables were
fixed on their own (4057954); Django's own admins (users, groups) and django-axes's (access
attempts, logs, failures) were not, nor the other ways a request's text reaches a query: the
autocomplete's term, a session cookie, a header django-axes stores. Other values a database
cannot compare (an id beyond bigint on SQLite, an address that is none on PostgreSQL, a date
hierarchy at the calendar's edge, an invalid regular expression) failed the same way.

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


def test_date_hierarchy_outside_the_calendar_is_the_admins_error_page(
    browser: Any, web_backend: Any
) -> None:
    """On the old code year 9999 (no next year), December 9999 and its last day (no next
    month, no next day), and a year beyond C's long answered 500 on both backends."""
    on_sqlite = web_backend.db.type == "sqlite"
    cases = {
        "year=9999": "e=1",
        "year=9999&month=12": "e=1",
        "year=9999&month=12&day=31": "e=1",
        "year=99999999999999999999": "e=1",
        "year=99999": "e=1",
        "year=abc": "e=1",
        "year=2024&month=13": "e=1",
        "year=2024&month=2&day=30": "e=1",
        "year=2024&month=2&day=29": "200",
        "year=9999&month=11": "200",
        # Midnight of 1 January 1 in Moscow has no UTC form, which SQLite's text needs;
        # PostgreSQL keeps the offset.
        "year=1": "e=1" if on_sqlite else "200",
        "year=1&month=1&day=2": "200",
    }
    hierarchies = [
        (model_admin.date_hierarchy, url)
        for _, model_admin, url in registered()
        if model_admin.date_hierarchy
    ]
    assert len(hierarchies) >= 3  # django-axes's attempts, logs and failures
    wrong = []
    for field, url in hierarchies:
        for query, expected in cases.items():
            params = "&".join(f"{field}__{part}" for part in query.split("&"))
            response = browser.get(f"{url}?{params}")
            if answer(response) != expected:
                wrong.append(f"{url}?{params}: {answer(response)}, not {expected}")
    assert wrong == []


def test_values_the_database_cannot_compare_are_the_admins_error_page(
    browser: Any, web_backend: Any
) -> None:
    """On the old code PostgreSQL answered 500 to an address that is none (ValueError adapting
    it to inet), SQLite to an integer beyond its 64 bits in a list of ids or a foreign key
    (OverflowError binding it), and to JSON containment, which it lacks; both to a year beyond
    C's long.
    Where the database can compare the value the list answers, like any filter that matches
    nothing."""
    backend = web_backend.db.type
    cases: dict[str, dict[str, str]] = {
        "/admin/axes/accessattempt/?ip_address=abc": {"sqlite": "200", "postgres": "e=1"},
        "/admin/axes/accesslog/?ip_address__exact=1.2.3": {"sqlite": "200", "postgres": "e=1"},
        "/admin/axes/accessfailurelog/?ip_address__gte=x": {"sqlite": "200", "postgres": "e=1"},
        "/admin/axes/accessattempt/?ip_address=192.0.2.1": {"sqlite": "200", "postgres": "200"},
        "/admin/domain/payment/?user__exact=99999999999999999999": {
            "sqlite": "e=1",
            "postgres": "200",
        },
        "/admin/domain/payment/?user__lte=-99999999999999999999": {
            "sqlite": "e=1",
            "postgres": "200",
        },
        "/admin/auth/user/?groups__in=1,99999999999999999999": {
            "sqlite": "e=1",
            "postgres": "200",
        },
        "/admin/domain/payment/?metadata__contains=abc": {"sqlite": "e=1", "postgres": "200"},
        "/admin/auth/user/?date_joined__year=99999999999999999999": {
            "sqlite": "e=1",
            "postgres": "e=1",
        },
        "/admin/domain/payment/?created_at__year__gt=99999999999999999999": {
            "sqlite": "e=1",
            "postgres": "e=1",
        },
        "/admin/domain/payment/?id=abc": {"sqlite": "e=1", "postgres": "e=1"},
    }
    for _, _, url in registered():
        cases[f"{url}?id__in=1,99999999999999999999"] = {"sqlite": "e=1", "postgres": "200"}
    wrong = []
    for url, expected in cases.items():
        response = browser.get(url)
        if answer(response) != expected[backend]:
            wrong.append(f"{url}: {answer(response)}, not {expected[backend]}")
    assert wrong == []


def test_pattern_range_and_password_lookups_are_refused(browser: Any) -> None:
    """A regular expression from a request is compiled by the database: an invalid one answered
    500 on both backends on the old code, and one that backtracks (`(a+)+$`) holds a worker on
    SQLite, whose REGEXP is Python's `re`. A range from a query string is one text, whose
    characters became its bounds: 500 on both backends (wrong number of parameters). No list's
    filter sends either. Password lookups: Django's UserAdmin refuses them
    (lookup_allowed), and relations to a password are outside every list's filters; confirmed
    here, as those answered 400 on the old code too."""
    refused = [
        "/admin/auth/user/?username__regex=(",
        "/admin/auth/group/?name__iregex=[",
        "/admin/domain/chatmessage/?text__regex=(a%2B)%2B$",
        "/admin/axes/accessattempt/?username__iregex=(",
        "/admin/auth/user/?password__startswith=pbkdf2",
        "/admin/auth/user/?password=x",
        "/admin/auth/user/?password__regex=.",
        "/admin/auth/group/?user__password__startswith=p",
        "/admin/axes/accesslog/?username__regex=%5E",
        "/admin/domain/payment/?status__range=1,2",
        "/admin/auth/user/?username__range=a",
    ]
    wrong = [f"{url}: {answer(browser.get(url))}" for url in refused]
    assert wrong == [f"{url}: 400" for url in refused]


def test_actions_take_only_keys_of_the_table(browser: Any, staff: tuple[str, str]) -> None:
    """An action's checked rows that are no key answered 500 on the old code on both backends
    (ValueError: "Field 'id' expected a number"); beyond bigint, OverflowError on SQLite."""
    request = superuser_request(staff)
    with_actions = [
        (url, name)
        for _, model_admin, url in registered()
        for name in list(model_admin.get_actions(request))[:1]
    ]
    assert {"/admin/auth/user/", "/admin/axes/accessattempt/", "/admin/domain/chat/"} <= {
        url for url, _ in with_actions
    }
    wrong = []
    for url, action in with_actions:
        for selected in ("abc", "\x00", "1e5", "99999999999999999999", "9223372036854775808"):
            response = browser.post(url, {"action": action, "_selected_action": [selected]})
            if answer(response) != "400":
                wrong.append(f"{url} {action} {selected!r}: {answer(response)}")
    assert wrong == []


def test_forms_refuse_nul_and_keys_beyond_the_range(browser: Any, staff: tuple[str, str]) -> None:
    """A NUL in a form's field is the field's error (Django's validators: confirmed). On the
    old code a group or user with a permission or group id beyond 64 bits answered 500 on
    SQLite (OverflowError in the multiple choice's query)."""
    from django.contrib.auth.models import Group, User
    from django.test import Client

    user = User.objects.get(username=staff[0])
    with no_nul_reaches_the_database():
        anonymous = Client(raise_request_exception=False, REMOTE_ADDR="203.0.113.81")
        for credentials in (
            {"username": "nul\x00name", "password": "wrong"},
            {"username": "nul-password", "password": "wrong\x00"},
            {"username": "nul-extra", "password": "wrong", "extra": "\x00"},
        ):
            response = anonymous.post("/admin/login/", credentials)
            assert answer(response) == "200"
            assert 'name="username"' in response.content.decode()

        forms = {
            "/admin/auth/user/add/": {
                "username": "new\x00staff",
                "password1": "correct-horse-battery",
                "password2": "correct-horse-battery",
            },
            "/admin/auth/group/add/": {"name": "g\x00"},
            "/admin/password_change/": {
                "old_password": "x\x00",
                "new_password1": "correct-horse-battery-2",
                "new_password2": "correct-horse-battery-2",
            },
            "/admin/domain/tariff/add/": {"code": "n\x00", "title": "t", "price_minor": "1"},
        }
        for key in ("99999999999999999999", "9223372036854775808", "abc", "\x00"):
            forms[f"/admin/auth/group/add/?k={key.encode().hex()}"] = {
                "name": "beyond",
                "permissions": [key],
            }
            forms[f"/admin/auth/user/{user.pk}/change/?k={key.encode().hex()}"] = {
                "username": staff[0],
                "is_active": "on",
                "is_staff": "on",
                "is_superuser": "on",
                "date_joined_0": "2024-01-01",
                "date_joined_1": "00:00:00",
                "groups": [key],
            }
        for url, data in forms.items():
            response = browser.post(url, data)
            assert answer(response) == "200", f"{url}: {answer(response)}"
            assert "errorlist" in response.content.decode(), url
    assert not Group.objects.filter(name__in=["beyond", "g"]).exists()
    assert log_in(Client(), staff[0], staff[1])  # the password is unchanged
