"""A member's timeline in the admin, with Django's test client, on both backends: payments,
subscription changes, bans and unbans, messages, in time order, reachable from the member's
page, paged without losing entries, and only for staff who may see members."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.web.logins import log_in

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture(scope="module")
def history(domain_db: Any) -> dict[str, int]:
    """One member's year: a first payment, a subscription, reminders, grace, a ban, a renewal
    paid by hand, an unban, a declined charge; and another member's rows that must not show."""
    db = domain_db
    tariff = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('month', 'Месяц',"
        " 150000, 30) RETURNING id"
    )
    member = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (8101, 'anna') RETURNING id"
    )
    other = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (8102, 'boris') RETURNING id"
    )
    chat = db.fetchval(
        "INSERT INTO chats (telegram_chat_id, title, kind, is_managed)"
        " VALUES (-1008100, 'Агенты PRO', 'supergroup', TRUE) RETURNING id"
    )
    sub = db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, expired_at, created_at) VALUES (?, ?, 'expired', ?, ?, ?, ?)"
        " RETURNING id",
        (member, tariff, at(1), at(1 + 720), at(800), at(1)),
    )
    db.execute(
        "INSERT INTO payments (idempotence_key, provider_payment_id, user_id, tariff_id,"
        " subscription_id, kind, amount_minor, status, created_at, paid_at, applied_period_end)"
        " VALUES ('t-first', 'yk-1', ?, ?, ?, 'first', 150000, 'succeeded', ?, ?, ?)",
        (member, tariff, sub, at(0), at(0.5), at(721)),
    )
    db.execute(
        "INSERT INTO subscription_reminders (subscription_id, period_end, kind, sent_at)"
        " VALUES (?, ?, 'T-3', ?), (?, ?, 'grace_started', ?)",
        (sub, at(721), at(650), sub, at(721), at(722)),
    )
    db.execute(
        "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, subscription_id,"
        " action, reason, status, requested_at, done_at)"
        " VALUES ('ban:x', ?, ?, ?, 'ban', 'grace_ended', 'done', ?, ?)",
        (member, chat, sub, at(801), at(801)),
    )
    db.execute(
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor, status,"
        " cancellation_party, cancellation_reason, created_at)"
        " VALUES ('t-canceled', ?, ?, 'first', 150000, 'canceled', 'yoo_money',"
        " 'insufficient_funds', ?)",
        (member, tariff, at(810)),
    )
    db.execute(
        "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, action, reason,"
        " status, requested_at, last_error)"
        " VALUES ('unban:x', ?, ?, 'unban', 'paid_again', 'failed', ?, 'Bad Request')",
        (member, chat, at(820)),
    )
    for key, hours, text, status in (
        ("receipt:1", 0.6, "Оплата получена, вот ссылка в чат", "sent"),
        ("reminder:1", 650, "Подписка закончится через 3 дня", "sent"),
        ("grace:1", 722.1, "Льготный период до 04.04", "queued"),
    ):
        db.execute(
            "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text, status, sent_at,"
            " created_at) VALUES (?, 8101, ?, 'reminder', ?, ?, ?, ?)",
            (key, member, text, status, at(hours) if status == "sent" else None, at(hours)),
        )
    # Boris's rows.
    db.execute(
        "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text, created_at)"
        " VALUES ('boris:1', 8102, ?, 'receipt', 'Чек Бориса', ?)",
        (other, at(5)),
    )
    db.execute(
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor, status,"
        " created_at) VALUES ('b-1', ?, ?, 'first', 99900, 'pending', ?)",
        (other, tariff, at(6)),
    )
    return {"member": member, "other": other, "sub": sub}


EXPECTED = [  # newest first
    ("moderation", "Разбан в чате «Агенты PRO»"),
    ("payment", "Платёж 1500.00 RUB: отменён"),
    ("moderation", "Бан в чате «Агенты PRO»"),
    ("subscription", "Подписка истекла"),
    ("message", "Сообщение (reminder): queued"),
    ("subscription", "Начался льготный период"),
    ("message", "Сообщение (reminder): отправлено"),
    ("subscription", "Подписка оформлена: тариф «Месяц»"),
    ("message", "Сообщение (reminder): отправлено"),
    ("payment", "Платёж 1500.00 RUB: оплачен"),
]


def entries(html: str) -> list[tuple[str, str]]:
    rows = re.findall(r'data-kind="(\w+)">.*?<a href="[^"]*">([^<]*)</a>', html, re.S)
    # Titles without the delivery time a sent message carries.
    return [
        (kind, re.sub(r" \d\d\.\d\d\.\d{4} \d\d:\d\d$", "", title.strip())) for kind, title in rows
    ]


def test_the_timeline_is_linked_from_the_members_page(client: Any, history: dict[str, int]) -> None:
    page = client.get(f"/admin/domain/member/{history['member']}/change/")
    assert page.status_code == 200
    url = f"/admin/domain/member/{history['member']}/timeline/"
    assert f'href="{url}"' in page.content.decode()


def test_every_kind_of_event_in_time_order(client: Any, history: dict[str, int]) -> None:
    response = client.get(f"/admin/domain/member/{history['member']}/timeline/")
    assert response.status_code == 200
    html = response.content.decode()
    found = entries(html)
    assert found == EXPECTED, found
    # Details: the canceled payment's reason, the failed unban's error, the paid period, texts.
    assert "причина: insufficient_funds" in html
    assert "причина: paid_again; failed: Bad Request" in html
    assert "оплачено до 31.03.2026" in html
    assert "Оплата получена, вот ссылка в чат" in html
    # Boris's rows are his.
    assert "Чек Бориса" not in html
    assert "999.00" not in html
    # Every entry links to its row's admin page.
    assert f"/admin/domain/subscription/{history['sub']}/change/" in html


def test_pages_of_the_timeline_lose_nothing(web_backend: Any, history: dict[str, int]) -> None:
    from services.web.domain import models as m
    from services.web.domain.timeline import member_timeline

    member = m.Member.objects.get(pk=history["member"])
    everything = member_timeline(member).entries
    assert len(everything) == len(EXPECTED)
    seen = []
    before = None
    for _ in range(len(EXPECTED)):
        page = member_timeline(member, before=before, limit=3)
        seen.extend(page.entries)
        assert len(page.entries) >= 3 or page.older is None
        if page.older is None:
            break
        before = page.older
    assert [(e.at, e.title) for e in seen] == [(e.at, e.title) for e in everything]


def test_entries_of_one_instant_stay_on_one_page(
    web_backend: Any, domain_db: Any, history: dict[str, int]
) -> None:
    """One transaction stamps several rows alike (PostgreSQL's CURRENT_TIMESTAMP): a page that
    ended between them would lose the rest to the next page's strict `before`."""
    from services.web.domain import models as m
    from services.web.domain.timeline import member_timeline

    member = m.Member.objects.get(pk=history["member"])
    same = at(900)
    domain_db.execute(
        "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text, created_at)"
        " VALUES ('tie:1', 8101, ?, 'receipt', 'Один', ?), ('tie:2', 8101, ?, 'invite', 'Два', ?)",
        (member.pk, same, member.pk, same),
    )
    domain_db.execute(
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor, status,"
        " created_at) VALUES ('tie-p', ?, (SELECT id FROM tariffs WHERE code = 'month'),"
        " 'first', 150000, 'pending', ?)",
        (member.pk, same),
    )
    try:
        first = member_timeline(member, limit=2)
        assert [e.at for e in first.entries] == [same] * 3
        second = member_timeline(member, before=first.older, limit=2)
        assert all(e.at < same for e in second.entries)
    finally:
        domain_db.execute("DELETE FROM outbox WHERE dedupe_key IN ('tie:1', 'tie:2')")
        domain_db.execute("DELETE FROM payments WHERE idempotence_key = 'tie-p'")


def test_older_link_and_a_bad_cursor(client: Any, history: dict[str, int]) -> None:
    url = f"/admin/domain/member/{history['member']}/timeline/"
    page = client.get(url, {"before": at(801).isoformat()}).content.decode()
    assert [kind for kind, _ in entries(page)] == [kind for kind, _ in EXPECTED[3:]]
    assert client.get(url, {"before": "yesterday"}).status_code == 404
    assert client.get("/admin/domain/member/999999/timeline/").status_code == 404


def test_the_timeline_needs_the_members_view_permission(history: dict[str, int]) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    from services.web.bootstrap import create_staff

    url = f"/admin/domain/member/{history['member']}/timeline/"
    for username, codenames, status in (
        ("timeline_none", (), 403),
        ("timeline_viewer", ("view_member",), 200),
    ):
        create_staff(username, "correct-horse-battery")
        user = get_user_model().objects.get(username=username)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        client = Client()
        assert log_in(client, username, "correct-horse-battery")
        assert client.get(url).status_code == status, username


def test_each_source_needs_its_own_tables_view_permission(history: dict[str, int]) -> None:
    """The member's view permission alone shows no money, bans or message texts: each source
    shows only with its table's view permission, so no entry links to a page that says 403."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    from services.web.bootstrap import create_staff

    url = f"/admin/domain/member/{history['member']}/timeline/"
    for username, extra, kinds in (
        ("timeline_members_only", (), set()),
        ("timeline_payments", ("view_payment",), {"payment"}),
        ("timeline_subscriptions", ("view_subscription",), {"subscription"}),
        ("timeline_moderation", ("view_moderationaction",), {"moderation"}),
        ("timeline_outbox", ("view_outboxmessage",), {"message"}),
    ):
        create_staff(username, "correct-horse-battery")
        user = get_user_model().objects.get(username=username)
        user.user_permissions.set(Permission.objects.filter(codename__in=("view_member", *extra)))
        client = Client()
        assert log_in(client, username, "correct-horse-battery")
        response = client.get(url)
        assert response.status_code == 200, username
        html = response.content.decode()
        assert {kind for kind, _ in entries(html)} == kinds, username
        if "message" not in kinds:
            assert "Оплата получена" not in html, username
        if "payment" not in kinds:
            assert "1500.00" not in html, username
        assert 'id="timeline-hidden"' in html, username
        for link in re.findall(r'href="(/admin/domain/[^"]+/change/)"', html):
            assert client.get(link).status_code == 200, (username, link)


@pytest.mark.parametrize(
    "path",
    ["abc/timeline/", "broadcasts/timeline/", "1.5/timeline/"],
)
def test_a_member_id_that_is_no_number_is_not_found(
    client: Any, history: dict[str, int], path: str
) -> None:
    response = client.get(f"/admin/domain/member/{path}")
    assert response.status_code in (302, 404), response.status_code  # the admin's "no such"
    assert client.get(f"/admin/domain/member/{path}", follow=True).status_code == 200


@pytest.mark.parametrize(
    "before",
    [
        "2024-02-30T00:00:00+00:00",
        "2024-13-01T00:00:00+00:00",
        "0001-01-01T00:00:00+05:00",
        "9999-12-31T23:59:59-05:00",
        "9999-12-31T23:00:00+00:00",  # no time in Moscow
    ],
)
def test_a_cursor_outside_the_calendar_is_not_found(
    client: Any, history: dict[str, int], before: str
) -> None:
    url = f"/admin/domain/member/{history['member']}/timeline/"
    assert client.get(url, {"before": before}).status_code == 404


def test_a_cursor_at_the_calendars_edges_that_exists_works(
    client: Any, history: dict[str, int]
) -> None:
    url = f"/admin/domain/member/{history['member']}/timeline/"
    page = client.get(url, {"before": "9999-12-31T00:00:00+00:00"})
    assert page.status_code == 200
    assert len(entries(page.content.decode())) == len(EXPECTED)
    assert client.get(url, {"before": "0001-01-02T00:00:00+00:00"}).status_code == 200
