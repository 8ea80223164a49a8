"""The admin shows refunds: a read-only list, each payment's refunds inline, and the member's
timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def refunded(domain_db: Any) -> dict[str, int]:
    """A payment refunded in two parts, as payment_monitor records them."""
    db = domain_db
    tariff = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days)"
        " VALUES ('r', 'Месяц', 99000, 30) RETURNING id"
    )
    user = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (601, 'refunded_agent') RETURNING id"
    )
    sub = db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, expired_at) VALUES (?, ?, 'expired', ?, ?, ?) RETURNING id",
        (user, tariff, NOW - timedelta(days=2), NOW + timedelta(days=28), NOW),
    )
    payment = db.fetchval(
        "INSERT INTO payments (idempotence_key, provider_payment_id, user_id, tariff_id,"
        " subscription_id, kind, amount_minor, status, paid_at, processed_at)"
        " VALUES ('k-refunded', 'yk-refunded-1', ?, ?, ?, 'first', 99000, 'succeeded', ?, ?)"
        " RETURNING id",
        (user, tariff, sub, NOW - timedelta(days=2), NOW - timedelta(days=2)),
    )
    partial = db.fetchval(
        "INSERT INTO refunds (provider_refund_id, payment_id, amount_minor, currency, kind,"
        " effect) VALUES ('rf-partial-1', ?, 10000, 'RUB', 'partial', 'none') RETURNING id",
        (payment,),
    )
    full = db.fetchval(
        "INSERT INTO refunds (provider_refund_id, payment_id, amount_minor, currency, kind,"
        " effect, subscription_id) VALUES ('rf-full-1', ?, 89000, 'RUB', 'full',"
        " 'access_ended', ?) RETURNING id",
        (payment, sub),
    )
    return {"payment": payment, "partial": partial, "full": full, "member": user}


def test_refunds_are_listed_and_filtered(client: Any, refunded: dict[str, int]) -> None:
    page = client.get("/admin/domain/refund/").content.decode()
    assert "rf-partial-1" in page
    assert "rf-full-1" in page
    partial_only = client.get("/admin/domain/refund/?kind__exact=partial").content.decode()
    assert "rf-partial-1" in partial_only
    assert "rf-full-1" not in partial_only
    found = client.get("/admin/domain/refund/?q=yk-refunded-1").content.decode()
    assert "rf-full-1" in found


def test_a_payment_shows_its_refunds_read_only(client: Any, refunded: dict[str, int]) -> None:
    page = client.get(f"/admin/domain/payment/{refunded['payment']}/change/").content.decode()
    assert "rf-partial-1" in page
    assert "rf-full-1" in page
    assert "оплаченный период отменён" in page
    assert client.get("/admin/domain/refund/add/").status_code == 403
    change = client.post(f"/admin/domain/refund/{refunded['full']}/change/", {"kind": "partial"})
    assert change.status_code == 403


def test_the_members_timeline_shows_the_refunds(client: Any, refunded: dict[str, int]) -> None:
    page = client.get(f"/admin/domain/member/{refunded['member']}/timeline/").content.decode()
    assert "Возврат 890.00 RUB (полный)" in page
    assert "Возврат 100.00 RUB (частичный)" in page
    assert f"/admin/domain/refund/{refunded['full']}/change/" in page
