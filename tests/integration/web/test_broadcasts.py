"""Broadcasts from the admin, with Django's test client, on both backends: the preview and its
count, the outbox rows they become, a double submit, the daily limit (also under concurrent
submits), the permissions, progress from the outbox and resuming an interrupted queuing."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.db import sync_database
from tests.integration.web.logins import log_in

NOW = datetime.now(UTC)
NEW = "/admin/domain/member/broadcasts/new/"
LIST = "/admin/domain/member/broadcasts/"
TEXT = "Завтра вебинар по ипотеке в 19:00.\nСсылка придёт утром & <b>не</b> HTML."


@pytest.fixture(scope="module", autouse=True)
def runtime_settings(web_backend: Any) -> Iterator[None]:
    """The web's runtime settings on this module's backend (conftest switches Django's aliases
    only; the broadcast writes go through the runtime DB layer built from settings.DOMOS)."""
    from django.test import override_settings

    with override_settings(DOMOS=web_backend, BROADCASTS_PER_DAY=50):
        yield


@pytest.fixture(scope="module")
def community(domain_db: Any) -> dict[str, int]:
    """Two tariffs; members who are active, in grace (running and run out), expired, blocked the
    bot while active, and never subscribed."""
    db = domain_db
    month = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('month', 'Месяц',"
        " 150000, 30) RETURNING id"
    )
    year = db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('year', 'Год',"
        " 1500000, 365) RETURNING id"
    )
    ids: dict[str, int] = {"month": month, "year": year}
    members = [
        # name, telegram id, tariff, status, grace_until, reachable
        ("active", 7001, month, "active", None, True),
        ("grace", 7002, year, "grace", NOW + timedelta(days=2), True),
        ("grace_over", 7003, month, "grace", NOW - timedelta(hours=1), True),
        ("expired", 7004, month, "expired", None, True),
        ("blocked", 7005, month, "active", None, False),
        ("year", 7006, year, "active", None, True),
    ]
    for name, telegram_id, tariff, status, grace_until, reachable in members:
        user = db.fetchval(
            "INSERT INTO users (telegram_id, username, is_reachable, blocked_at)"
            " VALUES (?, ?, ?, ?) RETURNING id",
            (telegram_id, f"agent_{name}", reachable, None if reachable else NOW),
        )
        ids[name] = user
        db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, grace_until) VALUES (?, ?, ?, ?, ?, ?)",
            (user, tariff, status, NOW - timedelta(days=30), NOW + timedelta(days=1), grace_until),
        )
    ids["nobody"] = db.fetchval(
        "INSERT INTO users (telegram_id, username) VALUES (7007, 'agent_nobody') RETURNING id"
    )
    return ids


@pytest.fixture(autouse=True)
def no_broadcasts(domain_db: Any, community: dict[str, int]) -> None:
    """Each test starts with no broadcast today (the daily allowance is the module's)."""
    domain_db.execute("DELETE FROM outbox WHERE kind = 'broadcast'")
    domain_db.execute("DELETE FROM broadcasts")


def _staff_with(username: str, *codenames: str) -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.test import Client

    from services.web.bootstrap import create_staff

    create_staff(username, "correct-horse-battery")
    user = get_user_model().objects.get(username=username)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    assert log_in(client, username, "correct-horse-battery")
    return client


def preview(client: Any, audience: str = "active", text: str = TEXT) -> Any:
    response = client.post(NEW, {"step": "preview", "text": text, "audience": audience})
    assert response.status_code == 200
    return response


def token_of(response: Any) -> str:
    found = re.search(r'name="token" value="([0-9a-f-]{36})"', response.content.decode())
    assert found, response.content.decode()
    return found.group(1)


def send(client: Any, token: str, audience: str = "active", text: str = TEXT) -> Any:
    return client.post(NEW, {"step": "send", "text": text, "audience": audience, "token": token})


def broadcast_rows(db: Any) -> list[Any]:
    return db.fetchall(
        "SELECT chat_id, user_id, kind, text, priority, status, parse_mode, dedupe_key"
        " FROM outbox WHERE kind = 'broadcast' ORDER BY chat_id"
    )


def test_the_preview_shows_the_text_and_whom_it_reaches(client: Any, domain_db: Any) -> None:
    response = client.get(LIST)
    assert response.status_code == 200
    assert NEW in response.content.decode()
    form = client.get(NEW)
    assert form.status_code == 200
    assert "Участники тарифа «Год»" in form.content.decode()

    page = preview(client).content.decode()
    # The text escaped as plain text (Telegram gets it without a parse mode).
    assert "Ссылка придёт утром &amp; &lt;b&gt;не&lt;/b&gt; HTML." in page
    # active, grace not over, year: three; the blocked member is told apart; grace over,
    # expired and the member with no subscription are not counted at all.
    assert re.search(r'id="reach-count">3<', page), page
    assert "ещё 1 заблокировали бота" in page
    assert "Отправить 3 участникам" in page

    year = preview(
        client, audience=str(domain_db.fetchval("SELECT id FROM tariffs WHERE code = 'year'"))
    )
    assert re.search(r'id="reach-count">2<', year.content.decode())
    # A preview sends nothing.
    assert broadcast_rows(domain_db) == []


def test_a_broadcast_becomes_one_outbox_row_per_member(
    client: Any, domain_db: Any, community: dict[str, int]
) -> None:
    response = send(client, token_of(preview(client)))
    assert response.status_code == 302
    broadcast_id = domain_db.fetchval("SELECT id FROM broadcasts")
    assert response["Location"] == f"{LIST}{broadcast_id}/"

    rows = broadcast_rows(domain_db)
    assert [row["chat_id"] for row in rows] == [7001, 7002, 7006]
    assert [row["user_id"] for row in rows] == [
        community["active"],
        community["grace"],
        community["year"],
    ]
    for row in rows:
        assert (row["kind"], row["text"], row["status"], row["parse_mode"]) == (
            "broadcast",
            TEXT,
            "queued",
            None,
        )
        # After receipts and reminders: a bulk message.
        assert row["priority"] == 200
        assert row["dedupe_key"] == f"broadcast:{broadcast_id}:{row['chat_id']}"
    broadcast = domain_db.fetchone("SELECT * FROM broadcasts")
    assert (broadcast["status"], broadcast["recipients_count"], broadcast["created_by"]) == (
        "queued",
        3,
        "operator",
    )
    assert broadcast["queued_at"] is not None

    detail = client.get(response["Location"])
    page = detail.content.decode()
    assert "Рассылка поставлена в очередь: 3 сообщений." in page
    assert re.search(r'data-status="queued">3<', page)
    assert re.search(r'data-status="not_queued">0<', page)


def test_line_breaks_as_browsers_submit_them_are_telegrams(client: Any, domain_db: Any) -> None:
    submitted = TEXT.replace("\n", "\r\n")
    response = preview(client, text=submitted)
    assert send(client, token_of(response), text=submitted).status_code == 302
    assert {row["text"] for row in broadcast_rows(domain_db)} == {TEXT}
    # Telegram's 4096 characters, counted after the CRLFs became LFs.
    longest = ("x" * 99 + "\r\n") * 40 + "x" * 96
    assert len(longest.replace("\r\n", "\n")) == 4096
    assert send(client, token_of(preview(client, text=longest)), text=longest).status_code == 302


def test_a_double_submit_sends_once(client: Any, domain_db: Any) -> None:
    token = token_of(preview(client))
    first = send(client, token)
    second = send(client, token)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert domain_db.fetchval("SELECT COUNT(*) FROM broadcasts") == 1
    assert len(broadcast_rows(domain_db)) == 3
    page = client.get(second["Location"]).content.decode()
    assert "Эта рассылка уже отправлена" in page


def test_a_tariffs_members_only(client: Any, domain_db: Any) -> None:
    year = str(domain_db.fetchval("SELECT id FROM tariffs WHERE code = 'year'"))
    assert send(client, token_of(preview(client, audience=year)), audience=year).status_code == 302
    assert [row["chat_id"] for row in broadcast_rows(domain_db)] == [7002, 7006]


def test_nobody_to_send_to_takes_no_slot(client: Any, domain_db: Any) -> None:
    empty = str(
        domain_db.fetchval(
            "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('empty',"
            " 'Пустой', 100, 30) RETURNING id"
        )
    )
    page = preview(client, audience=empty).content.decode()
    assert re.search(r'id="reach-count">0<', page)
    assert "Некому отправлять." in page
    assert 'value="send"' not in page
    # A confirmation sent anyway (a stale form, a crafted request) creates nothing.
    refused = send(client, str(uuid.uuid4()), audience=empty)
    assert refused.status_code == 200
    assert "Некому отправлять: рассылка не создана." in refused.content.decode()
    assert domain_db.fetchval("SELECT COUNT(*) FROM broadcasts") == 0
    domain_db.execute("DELETE FROM tariffs WHERE code = 'empty'")


def test_at_most_n_a_day(client: Any, domain_db: Any) -> None:
    from django.test import override_settings

    with override_settings(BROADCASTS_PER_DAY=2):
        for _ in range(2):
            assert send(client, token_of(preview(client))).status_code == 302
        page = preview(client).content.decode()
        assert "Сегодня отправлено рассылок: 2 из 2." in page
        assert "Лимит рассылок на сегодня исчерпан." in page
        assert "Отправить 3 участникам" not in page
        # A confirmation form from before the limit was reached is refused too.
        refused = send(client, str(uuid.uuid4()))
        assert refused.status_code == 200
        assert "Сегодня уже отправлено рассылок: 2 из 2." in refused.content.decode()
    assert domain_db.fetchval("SELECT COUNT(*) FROM broadcasts") == 2
    assert len(broadcast_rows(domain_db)) == 6
    with override_settings(BROADCASTS_PER_DAY=0):
        assert "Рассылки выключены" in preview(client).content.decode()
        off = send(client, str(uuid.uuid4())).content.decode()
        assert "Рассылки выключены (WEB_BROADCASTS_PER_DAY=0)." in off
    assert domain_db.fetchval("SELECT COUNT(*) FROM broadcasts") == 2


def test_the_limit_holds_under_concurrent_submits(web_backend: Any, domain_db: Any) -> None:
    """Six submits at once with an allowance of two: two broadcasts, whatever the timing (the
    day's slot is a unique key; PostgreSQL's writers do not wait for each other's counts)."""
    from django.db import connections
    from django.utils import timezone

    from services.web.domain import broadcasts

    results: list[str] = []
    barrier = threading.Barrier(6)

    def submit() -> None:
        try:
            with sync_database(web_backend) as db:
                barrier.wait()
                now = timezone.now()
                broadcasts.create(
                    db,
                    token=str(uuid.uuid4()),
                    text="Параллельно",
                    audience=broadcasts.Audience(),
                    created_by="race",
                    now=now,
                    local_day=timezone.localdate(now),
                    per_day=2,
                )
            results.append("created")
        except broadcasts.DailyLimitReached:
            results.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["created"] * 2 + ["refused"] * 4
    assert domain_db.fetchval("SELECT COUNT(*) FROM broadcasts") == 2
    assert [
        row["day_slot"] for row in domain_db.fetchall("SELECT day_slot FROM broadcasts ORDER BY 1")
    ] == [1, 2]


def test_sending_needs_the_add_permission(domain_db: Any) -> None:
    viewer = _staff_with("broadcast_viewer", "view_broadcast")
    assert viewer.get(LIST).status_code == 200
    assert NEW not in viewer.get(LIST).content.decode()
    assert viewer.get(NEW).status_code == 403
    assert send(viewer, str(uuid.uuid4())).status_code == 403
    nobody = _staff_with("no_broadcasts", "view_member")
    assert nobody.get(LIST).status_code == 403
    assert broadcast_rows(domain_db) == []

    sender = _staff_with("broadcast_sender", "add_broadcast")
    response = send(sender, token_of(preview(sender)))
    assert response.status_code == 302
    assert len(broadcast_rows(domain_db)) == 3
    assert domain_db.fetchval("SELECT created_by FROM broadcasts") == "broadcast_sender"


def test_progress_is_counted_from_the_outbox(client: Any, domain_db: Any) -> None:
    location = send(client, token_of(preview(client)))["Location"]
    broadcast_id = domain_db.fetchval("SELECT id FROM broadcasts")
    # What notifymonitor would do: one delivered, one dead (blocked meanwhile), one retrying.
    domain_db.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ? WHERE dedupe_key = ?",
        (NOW, f"broadcast:{broadcast_id}:7001"),
    )
    domain_db.execute(
        "UPDATE outbox SET status = 'dead', attempts = 8 WHERE dedupe_key = ?",
        (f"broadcast:{broadcast_id}:7002",),
    )
    domain_db.execute(
        "UPDATE outbox SET status = 'failed', attempts = 1 WHERE dedupe_key = ?",
        (f"broadcast:{broadcast_id}:7006",),
    )
    # Another producer's row to the same member is not this broadcast's.
    domain_db.execute(
        "INSERT INTO outbox (dedupe_key, chat_id, kind, text, status, sent_at)"
        " VALUES ('receipt:x', 7001, 'receipt', 'Чек', 'sent', ?)",
        (NOW,),
    )
    page = client.get(location).content.decode()
    for status, count in (("sent", 1), ("dead", 1), ("failed", 1), ("queued", 0)):
        assert re.search(rf'data-status="{status}">{count}<', page), status
    assert "Идёт отправка: отправлено 1 из 3." in page
    listing = client.get(LIST).content.decode()
    assert re.search(r"<td>3</td>\s*<td>1</td>\s*<td>1</td>\s*<td>1</td>", listing), listing

    domain_db.execute(
        "UPDATE outbox SET status = 'sent', sent_at = ? WHERE dedupe_key = ?",
        (NOW, f"broadcast:{broadcast_id}:7006"),
    )
    assert "Готово: отправлено 2, не доставлено 1." in client.get(location).content.decode()
    domain_db.execute("DELETE FROM outbox WHERE dedupe_key = 'receipt:x'")


def test_an_interrupted_queuing_is_resumed_without_duplicates(
    client: Any, domain_db: Any, web_backend: Any
) -> None:
    from django.utils import timezone

    from services.web.domain import broadcasts

    now = timezone.now()
    with sync_database(web_backend) as db:
        created = broadcasts.create(
            db,
            token=str(uuid.uuid4()),
            text="Прервано",
            audience=broadcasts.Audience(),
            created_by="operator",
            now=now,
            local_day=timezone.localdate(now),
            per_day=5,
        )
        # The request died after one outbox row.
        first = domain_db.fetchone(
            "SELECT chat_id, outbox_dedupe_key FROM broadcast_recipients WHERE broadcast_id = ?"
            " ORDER BY id LIMIT 1",
            (created.id,),
        )
        from services.botapi.send import SendRequest, enqueue

        enqueue(
            db,
            SendRequest(
                chat_id=first["chat_id"],
                text="Прервано",
                dedupe_key=first["outbox_dedupe_key"],
                kind="broadcast",
                priority=200,
            ),
        )
    location = f"{LIST}{created.id}/"
    page = client.get(location).content.decode()
    assert re.search(r'data-status="not_queued">2<', page)
    assert "Дописать в очередь" in page
    resumed = client.post(f"{location}resume/")
    assert resumed.status_code == 302
    assert "Дописано в очередь: 2 сообщений." in client.get(location).content.decode()
    assert client.post(f"{location}resume/").status_code == 302
    assert len(broadcast_rows(domain_db)) == 3
    assert (
        domain_db.fetchval("SELECT status FROM broadcasts WHERE id = ?", (created.id,)) == "queued"
    )


def test_text_is_checked_before_it_is_previewed(client: Any, domain_db: Any) -> None:
    for text in ("", "x" * 4097, "NUL \x00 inside"):
        response = client.post(NEW, {"step": "preview", "text": text, "audience": "active"})
        assert response.status_code == 200
        assert 'id="broadcast_form"' in response.content.decode()
        assert "errorlist" in response.content.decode()
    assert broadcast_rows(domain_db) == []
