"""The staff admin with Django's test client, on both backends."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from runtime.monitor.health import HealthState, health_path, write_health
from tests.integration.web.logins import log_in

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def seeded(domain_db: Any) -> dict[str, int]:
    """A small community: an active and an expired member, payments, outbox, survey, inbox."""
    db = domain_db
    tariff = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('m', 'Месяц', 150000,"
        " 30) RETURNING id"
    )
    active = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (501, 'active_agent') RETURNING id"
    )
    lapsed = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (502, 'lapsed_agent') RETURNING id"
    )
    db.fetchval("INSERT INTO users (telegram_id, username) VALUES (503, 'newbie') RETURNING id")
    sub = db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end) VALUES (?, ?, 'active', ?, ?) RETURNING id",
        (active, tariff, NOW - timedelta(days=2), NOW + timedelta(days=28)),
    )
    db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, expired_at) VALUES (?, ?, 'expired', ?, ?, ?)",
        (lapsed, tariff, NOW - timedelta(days=90), NOW - timedelta(days=60), NOW),
    )
    paid = db.fetchval(
        "INSERT INTO payments (idempotence_key, provider_payment_id, user_id, tariff_id, kind,"
        " amount_minor, status, paid_at) VALUES ('k-paid', 'yk-paid-1', ?, ?, 'first', 150000,"
        " 'succeeded', ?) RETURNING id",
        (active, tariff, NOW - timedelta(minutes=5)),
    )
    db.execute(
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor, status)"
        " VALUES ('k-open', ?, ?, 'first', 150000, 'pending')",
        (lapsed, tariff),
    )
    dead = db.fetchval(
        "INSERT INTO outbox (dedupe_key, chat_id, user_id, text, status, attempts, last_error)"
        " VALUES ('dead-1', 502, ?, 'Напоминание', 'dead', 5, 'Forbidden') RETURNING id",
        (lapsed,),
    )
    chat = db.fetchval(
        "INSERT INTO chats (telegram_chat_id, title, kind, is_managed)"
        " VALUES (-100500, 'Агенты PRO', 'supergroup', TRUE) RETURNING id"
    )
    db.execute(
        "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, action, reason,"
        " status, done_at) VALUES ('ban:1', ?, ?, 'ban', 'grace_ended', 'done', ?)",
        (lapsed, chat, NOW),
    )
    survey = db.fetchval(
        "INSERT INTO surveys (user_id, month, status, answered_at) VALUES (?, ?, 'answered', ?)"
        " RETURNING id",
        (active, NOW.strftime("%Y-%m"), NOW),
    )
    db.execute(
        "INSERT INTO survey_responses (survey_id, question_key, answer)"
        " VALUES (?, 'suggestion', 'Больше вебинаров')",
        (survey,),
    )
    db.execute(
        "INSERT INTO chat_messages (chat_id, message_id, kind, text, message_date, raw)"
        " VALUES (-100500, 7, 'message', 'Продаю студию #ипотека', ?, ?)",
        (NOW, {"message_id": 7}),
        db="useful",
    )
    db.execute(
        "INSERT INTO audio_files (file_unique_id, file_id, chat_id, message_id)"
        " VALUES ('uniq-1', 'file-1', 501, 3)",
        db="audio",
    )
    complex_id = db.fetchval(
        "INSERT INTO nmarket_complexes (name, normalized_name, first_seen_at, last_seen_at)"
        " VALUES ('ЖК Лето', 'жк лето', ?, ?) RETURNING id",
        (NOW, NOW),
        db="nmarket",
    )
    db.execute(
        "INSERT INTO nmarket_flats (complex_id, external_key, rooms, area_dm2, price_minor,"
        " first_seen_at, last_seen_at) VALUES (?, 'lot-17', 1, 3550, 750000000, ?, ?)",
        (complex_id, NOW, NOW),
        db="nmarket",
    )
    return {
        "tariff": tariff,
        "active": active,
        "lapsed": lapsed,
        "sub": sub,
        "paid": paid,
        "dead": dead,
        "survey": survey,
    }


def test_login_required_and_health_probe_open(web_backend: Any) -> None:
    from django.test import Client

    anonymous = Client()
    for path in ("/overview/", "/admin/", "/admin/domain/payment/"):
        response = anonymous.get(path)
        assert response.status_code == 302, path
        assert "/admin/login/" in response["Location"]
    assert anonymous.get("/healthz").json() == {"ok": True}


def test_login_form_requires_csrf_and_sets_secure_cookies(staff: tuple[str, str]) -> None:
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    credentials = {"username": staff[0], "password": staff[1], "next": "/overview/"}
    assert browser.post("/admin/login/", credentials).status_code == 403

    page = browser.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    assert page.cookies["csrftoken"]["secure"]
    response = browser.post("/admin/login/", {**credentials, "csrfmiddlewaretoken": token[1]})
    assert response.status_code == 302
    assert response["Location"] == "/overview/"
    assert response.cookies["sessionid"]["secure"]
    assert response.cookies["sessionid"]["httponly"]


def test_repeated_failed_logins_lock_the_username_from_that_address(
    staff: tuple[str, str],
) -> None:
    from django.conf import settings
    from django.test import Client

    from services.web.bootstrap import create_staff

    create_staff("locked-out", "correct-horse-battery")
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    wrong = {"username": "locked-out", "password": "wrong", "next": "/overview/"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attacker.post("/admin/login/", wrong).status_code == 200  # the form again
    assert attacker.post("/admin/login/", wrong).status_code == 429  # the last one allowed
    right = {**wrong, "password": "correct-horse-battery"}
    locked = attacker.post("/admin/login/", right)
    assert locked.status_code == 429
    assert "sessionid" not in locked.cookies
    # Rotating X-Forwarded-For does not escape it: the address is REMOTE_ADDR.
    assert (
        attacker.post("/admin/login/", right, HTTP_X_FORWARDED_FOR="198.51.100.9").status_code
        == 429
    )
    # The same staff member from their own address, and other staff, still log in.
    assert Client(REMOTE_ADDR="192.0.2.10").post("/admin/login/", right).status_code == 302
    other = {"username": staff[0], "password": staff[1], "next": "/overview/"}
    assert attacker.post("/admin/login/", other).status_code == 302


def test_behind_the_proxy_the_lockout_is_the_forwarded_clients(staff: tuple[str, str]) -> None:
    """Behind the TLS proxy every peer was Docker's gateway: four wrong passwords from anyone
    locked a username out for all, and the audit named only the gateway."""
    from ipaddress import ip_network

    from axes.models import AccessFailureLog
    from django.conf import settings
    from django.test import Client, override_settings

    from services.web.bootstrap import create_staff

    create_staff("behind-proxy", "correct-horse-battery")
    gateway = "172.18.0.1"
    wrong = {"username": "behind-proxy", "password": "wrong", "next": "/overview/"}
    right = {**wrong, "password": "correct-horse-battery"}
    trusted = (ip_network("172.16.0.0/12"),)
    with override_settings(WEB_TRUSTED_PROXIES=trusted):
        attacker = Client(REMOTE_ADDR=gateway, HTTP_X_FORWARDED_FOR="203.0.113.66")
        for _ in range(settings.AXES_FAILURE_LIMIT):
            attacker.post("/admin/login/", wrong)
        assert attacker.post("/admin/login/", right).status_code == 429
        # The staff member, through the same proxy from their own address, still logs in.
        staff_member = Client(REMOTE_ADDR=gateway, HTTP_X_FORWARDED_FOR="198.51.100.20")
        assert staff_member.post("/admin/login/", right).status_code == 302
        # A forged entry left of the proxy's own is not believed: the proxy appends the peer.
        forged = Client(REMOTE_ADDR=gateway, HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.66")
        assert forged.post("/admin/login/", right).status_code == 429
    logged = set(
        AccessFailureLog.objects.filter(username="behind-proxy").values_list(
            "ip_address", flat=True
        )
    )
    assert logged == {"203.0.113.66"}
    # Not behind a trusted proxy, the header is the client's own word and ignored.
    direct = Client(REMOTE_ADDR="192.0.2.55", HTTP_X_FORWARDED_FOR="203.0.113.66")
    assert direct.post("/admin/login/", right).status_code == 302


def test_stored_login_attempts_mask_the_csrf_token_and_sessions_last_a_day(
    staff: tuple[str, str],
) -> None:
    from axes.models import AccessAttempt
    from django.conf import settings
    from django.test import Client

    browser = Client(enforce_csrf_checks=True, REMOTE_ADDR="203.0.113.44")
    page = browser.get("/admin/login/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token is not None
    wrong = {"username": "csrf-masked", "password": "wrong", "csrfmiddlewaretoken": token[1]}
    assert browser.post("/admin/login/", wrong).status_code == 200
    attempt = AccessAttempt.objects.get(username="csrf-masked")
    assert token[1] not in attempt.post_data
    assert "csrfmiddlewaretoken" in attempt.post_data
    assert settings.SESSION_COOKIE_AGE <= 12 * 60 * 60


def test_every_admin_list_renders(client: Any, seeded: dict[str, int]) -> None:
    from django.contrib import admin

    for model in admin.site._registry:
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = client.get(url)
        assert response.status_code == 200, f"{url}: {response.status_code}"


@pytest.mark.parametrize(
    ("url", "present", "absent"),
    [
        ("/admin/domain/member/?subscription__status=active", "active_agent", "lapsed_agent"),
        ("/admin/domain/member/?q=502", "lapsed_agent", "active_agent"),
        ("/admin/domain/payment/?status__exact=succeeded", "yk-paid-1", "k-open"),
        ("/admin/domain/outboxmessage/?status__exact=dead", "Forbidden", "no-such-row"),
        ("/admin/domain/moderationaction/?action__exact=ban", "grace_ended", "no-such-row"),
        ("/admin/domain/surveyresponse/?q=вебинаров", "Больше вебинаров", "no-such-row"),
        ("/admin/domain/chatmessage/?q=студию", "Продаю студию", "no-such-row"),
        ("/admin/domain/nmarketflat/?rooms=1", "ЖК Лето", "no-such-row"),
    ],
)
def test_filters_and_search(
    client: Any, seeded: dict[str, int], url: str, present: str, absent: str
) -> None:
    page = client.get(url).content.decode()
    assert present in page
    assert absent not in page


def test_payments_filtered_by_date(client: Any, seeded: dict[str, int]) -> None:
    # What the admin's date filter sends: an aware lower bound.
    def since(moment: datetime) -> Any:
        return client.get("/admin/domain/payment/?" + urlencode({"paid_at__gte": str(moment)}))

    today = since(NOW - timedelta(hours=1))
    later = since(NOW + timedelta(days=2))
    assert "yk-paid-1" in today.content.decode()
    assert "yk-paid-1" not in later.content.decode()


@pytest.mark.parametrize(
    "bound",
    [
        "created_at__gte=0001-01-01+00:00:00%2B03:00",
        "paid_at__lt=9999-12-31+23:59:59-05:00",
    ],
)
def test_a_date_filter_outside_the_calendar_is_the_admins_error_page(
    client: Any, seeded: dict[str, int], bound: str
) -> None:
    """An instant with no UTC form raised OverflowError from the SQLite timestamp text (500)."""
    response = client.get(f"/admin/domain/payment/?{bound}")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")


@pytest.mark.parametrize(
    "query",
    [
        "status__exact=a%00b",
        "kind__exact=%00",
        "q=%00&status__exact=succeeded%00",
    ],
)
def test_a_nul_in_a_filter_is_the_admins_error_page(
    client: Any, seeded: dict[str, int], query: str
) -> None:
    """PostgreSQL refuses a NUL in text: the filter's value reached it (DataError, 500)."""
    response = client.get(f"/admin/domain/payment/?{query}")
    assert response.status_code == 302
    assert response["Location"].endswith("?e=1")
    assert client.get("/admin/domain/tariff/?is_active__exact=%00").status_code == 302


def test_monitor_owned_rows_are_read_only(client: Any, seeded: dict[str, int]) -> None:
    assert client.get(f"/admin/domain/payment/{seeded['paid']}/change/").status_code == 200
    assert client.get("/admin/domain/payment/add/").status_code == 403
    response = client.post(f"/admin/domain/payment/{seeded['paid']}/delete/", {"post": "yes"})
    assert response.status_code == 403


def test_tariff_created_in_admin_is_readable_by_the_runtime(
    client: Any, domain_db: Any, seeded: dict[str, int]
) -> None:
    response = client.post(
        "/admin/domain/tariff/add/",
        {
            "code": "year",
            "title": "Год",
            "price_minor": "1500000",
            "currency": "RUB",
            "period_days": "365",
            "is_active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = domain_db.fetchone("SELECT * FROM tariffs WHERE code = 'year'")
    assert row["price_minor"] == 1500000
    assert isinstance(row["created_at"], datetime)
    assert abs(row["created_at"] - datetime.now(UTC)) < timedelta(minutes=1)
    # Text order is time order on SQLite only if Django wrote the runtime's format.
    newest = domain_db.fetchval("SELECT code FROM tariffs ORDER BY created_at DESC LIMIT 1")
    assert newest == "year"


def test_requeue_dead_letters_action(client: Any, domain_db: Any, seeded: dict[str, int]) -> None:
    response = client.post(
        "/admin/domain/outboxmessage/",
        {"action": "requeue_dead_letters", "_selected_action": [seeded["dead"]]},
    )
    assert response.status_code == 302
    row = domain_db.fetchone("SELECT * FROM outbox WHERE id = ?", (seeded["dead"],))
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 0, None)


def test_overview_counts_members_revenue_and_monitor_health(
    client: Any, seeded: dict[str, int], run_dir: Path
) -> None:
    now = time.time()
    write_health(
        health_path(run_dir, "tsmonitor"),
        HealthState(
            monitor="tsmonitor",
            pid=1,
            owner="t",
            interval_s=60,
            role="leader",
            started_at=now - 100,
            heartbeat_at=now,
            last_success_at=now - 5,
        ),
    )
    write_health(
        health_path(run_dir, "ban_monitor"),
        HealthState(
            monitor="ban_monitor",
            pid=2,
            owner="t",
            interval_s=60,
            role="leader",
            started_at=now - 9000,
            heartbeat_at=now - 9000,
            last_success_at=now - 9000,
            consecutive_failures=4,
        ),
    )
    page = client.get("/overview/").content.decode()
    members = re.search(r'<table id="members">(.*?)</table>', page, re.S)
    assert members is not None
    assert re.search(r"<th>active</th><td>1</td>", members[1])
    assert re.search(r"<th>expired</th><td>1</td>", members[1])
    assert re.search(r"<th>без подписки</th><td>1</td>", members[1])
    revenue = re.search(r'<table id="revenue">(.*?)</table>', page, re.S)
    assert revenue is not None
    assert "1500" in revenue[1]
    assert "платежей: 1" in revenue[1]
    monitors = re.search(r'<table id="monitors">(.*?)</table>', page, re.S)
    assert monitors is not None
    assert re.search(r"<td>tsmonitor</td><td>OK</td>", monitors[1])
    assert re.search(r"<td>ban_monitor</td><td>FAIL", monitors[1])


@pytest.mark.parametrize(
    ("username", "codenames", "sections"),
    [
        ("overview-nobody", (), set()),
        ("overview-members", ("view_member", "view_subscription"), {"members"}),
        ("overview-members-only", ("view_member",), set()),
        ("overview-money", ("view_payment",), {"revenue"}),
        ("overview-outbox", ("view_outboxmessage",), {"outbox"}),
        ("overview-monitors", ("view_monitorheartbeat",), {"monitors"}),
    ],
)
def test_overview_sections_need_the_right_to_view_what_they_sum(
    seeded: dict[str, int], username: str, codenames: tuple[str, ...], sections: set[str]
) -> None:
    """A staff login with no rights saw revenue, member counts, the outbox and monitor health."""
    page = _staff_with(username, *codenames).get("/overview/")
    assert page.status_code == 200
    html = page.content.decode()
    assert set(re.findall(r'<table id="(\w+)">', html)) == sections
    if "revenue" not in sections:
        assert "1500" not in html
    assert ('id="overview-empty"' in html) == (not sections)


@pytest.fixture(scope="module")
def json_rows(domain_db: Any, seeded: dict[str, int]) -> dict[str, int]:
    """A payment and a provider event with JSON, written by the DB layer as the programs do."""
    payment = domain_db.fetchval(
        "INSERT INTO payments (idempotence_key, provider_payment_id, user_id, tariff_id, kind,"
        " amount_minor, status, metadata) VALUES ('k-json', 'yk-json-1', ?, ?, 'first', 150000,"
        " 'pending', ?) RETURNING id",
        (seeded["active"], seeded["tariff"], {"telegram_id": "501", "source": "бот"}),
    )
    event = domain_db.fetchval(
        "INSERT INTO provider_events (provider, event_key, event_type, object_id, payload)"
        " VALUES ('yookassa', 'payment.succeeded:yk-json-1', 'payment.succeeded', 'yk-json-1', ?)"
        " RETURNING id",
        ({"event": "payment.succeeded", "object": {"id": "yk-json-1", "paid": True}},),
    )
    return {"payment": payment, "event": event}


def test_json_columns_render_in_lists_and_details(client: Any, json_rows: dict[str, int]) -> None:
    # On SQLite the DB layer's process-wide JSON converter used to hand Django's JSONField a
    # dict: every page below answered 500 (TypeError in from_db_value).
    from services.web.domain import models as m

    assert m.Payment.objects.get(pk=json_rows["payment"]).metadata == {
        "telegram_id": "501",
        "source": "бот",
    }
    assert m.ProviderEvent.objects.get(pk=json_rows["event"]).payload["object"]["paid"] is True
    for url, text in (
        ("/admin/domain/payment/", "yk-json-1"),
        (f"/admin/domain/payment/{json_rows['payment']}/change/", "бот"),
        ("/admin/domain/providerevent/", "yk-json-1"),
        (f"/admin/domain/providerevent/{json_rows['event']}/change/", "payment.succeeded"),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert text in response.content.decode(), url


def test_timestamps_and_flags_keep_their_types(
    domain_db: Any, seeded: dict[str, int], json_rows: dict[str, int]
) -> None:
    from services.web.domain import models as m

    created = domain_db.fetchval(
        "SELECT created_at FROM payments WHERE id = ?", (json_rows["payment"],)
    )
    payment = m.Payment.objects.get(pk=json_rows["payment"])
    assert payment.created_at == created
    assert payment.created_at.tzinfo is not None
    member = m.Member.objects.get(pk=seeded["active"])
    assert member.is_reachable is True


def _staff_with(username: str, *codenames: str) -> Any:
    from django.contrib.auth.models import Permission
    from django.test import Client

    from services.web.bootstrap import create_staff

    create_staff(username, "correct-horse-battery")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=username)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()

    assert log_in(client, username, "correct-horse-battery")
    return client


def test_requeue_needs_the_change_permission(domain_db: Any, seeded: dict[str, int]) -> None:
    dead = domain_db.fetchval(
        "INSERT INTO outbox (dedupe_key, chat_id, text, status, attempts, last_error)"
        " VALUES ('dead-perm', 503, 'Привет', 'dead', 8, 'chat not found') RETURNING id"
    )
    post = {"action": "requeue_dead_letters", "_selected_action": [dead]}
    viewer = _staff_with("viewer", "view_outboxmessage")
    page = viewer.get("/admin/domain/outboxmessage/").content.decode()
    assert "requeue_dead_letters" not in page
    viewer.post("/admin/domain/outboxmessage/", post)
    assert domain_db.fetchval("SELECT status FROM outbox WHERE id = ?", (dead,)) == "dead"

    operator = _staff_with("outbox-operator", "view_outboxmessage", "change_outboxmessage")
    page = operator.get("/admin/domain/outboxmessage/").content.decode()
    assert "requeue_dead_letters" in page
    assert operator.post("/admin/domain/outboxmessage/", post).status_code == 302
    assert domain_db.fetchval("SELECT status FROM outbox WHERE id = ?", (dead,)) == "queued"


def test_pages_carry_the_projects_titles(client: Any, seeded: dict[str, int]) -> None:
    from django.test import Client

    pages = {
        "/overview/": client,
        "/admin/": client,
        "/admin/domain/payment/": client,
        "/admin/login/": Client(),
    }
    for url, browser in pages.items():
        page = browser.get(url).content.decode()
        assert "domos — администрирование" in page, url
        assert "Django" not in page, url
    assert "<title>Данные сообщества | domos</title>" in client.get("/admin/").content.decode()


@pytest.mark.parametrize(
    ("url", "one_line", "label"),
    [
        ("/admin/domain/event/add/", ("title", "location", "url"), "Название"),
        ("/admin/domain/tariff/add/", ("code", "title", "currency"), "Срок, дней"),
        ("/admin/domain/usefulrule/add/", ("pattern",), "Шаблон"),
    ],
)
def test_operator_forms_have_one_line_inputs_and_russian_labels(
    client: Any, seeded: dict[str, int], url: str, one_line: tuple[str, ...], label: str
) -> None:
    page = client.get(url).content.decode()
    for name in one_line:
        field = re.search(rf'<(input|textarea)[^>]*name="{name}"[^>]*>', page)
        assert field is not None, name
        assert field[1] == "input", field[0]
        assert 'type="text"' in field[0], field[0]
    assert label in page
    if "description" in page:
        assert '<textarea name="description"' in page


def test_a_right_to_left_override_in_a_name_stays_inside_it(
    client: Any, domain_db: Any, seeded: dict[str, int]
) -> None:
    """A Telegram name with U+202E showed "Vera (300000007)" for member 700000003."""
    from services.web.domain import models as m

    member = domain_db.fetchval(
        "INSERT INTO users (telegram_id, first_name) VALUES (700000003, ?) RETURNING id",
        ("Vera \u202e",),
    )
    shown = str(m.Member.objects.get(pk=member))
    assert shown == "\u2068Vera \u202e\u2069 (700000003)"
    page = client.get(f"/admin/domain/member/{member}/change/").content.decode()
    assert "\u2068Vera \u202e\u2069 (700000003)" in page
