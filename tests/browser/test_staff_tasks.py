"""The staff tasks of issue 18 in a real browser, on both backends, over the community the real
programs made (tests/browser/community.py): a broadcast to the active members (preview, count,
confirmation, a double click that sends once, progress), a member's timeline, and the payments'
CSV export. Screenshots of every step land in var/test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.community import ANNA, BORIS, Community

Shot = Callable[..., Path]
TEXT = "Друзья, в четверг в 19:00 вебинар о новых ЖК.\nСсылку пришлём утром."


def visit(page: Page, path: str) -> None:
    response = page.goto(path)
    assert response is not None, path
    assert response.status == 200, f"{path}: {response.status}"


def member_id(community: Community, telegram_id: int) -> int:
    with community.db() as db:
        return int(db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,)))


def test_broadcast_to_the_active_members(
    staff_page: Page, shot: Shot, community: Community
) -> None:
    page = staff_page
    visit(page, "/admin/domain/member/")
    page.click("#member-broadcasts")
    expect(page.locator("#content h1")).to_have_text("Рассылки")
    shot("broadcasts")
    page.click("text=Новая рассылка")
    expect(page.locator("#broadcast_form")).to_be_visible()
    page.fill("#id_text", TEXT)
    page.select_option("#id_audience", label="Все активные участники")
    shot("composed")
    page.click("button[value=preview]")

    # Anna renewed; Boris lapsed; Vera never paid (and blocked the bot): one member.
    expect(page.locator("#reach-count")).to_have_text("1")
    expect(page.locator("#broadcast-preview")).to_have_text(TEXT)
    shot("preview")
    with community.db() as db:
        before = db.fetchval("SELECT COUNT(*) FROM outbox WHERE kind = 'broadcast'")
        broadcasts_before = db.fetchval("SELECT COUNT(*) FROM broadcasts")
    confirmation: dict[str, str] = page.locator("#broadcast_confirm").evaluate(
        "form => Object.fromEntries(new FormData(form))"
    )
    # An impatient double click: two submits of one confirmation, one broadcast.
    page.dblclick("button[value=send]")
    expect(page).to_have_url(re.compile(r"/admin/domain/member/broadcasts/\d+/$"))
    expect(page.locator("#recipients-count")).to_have_text("1")
    expect(page.locator("#broadcast-text")).to_have_text(TEXT)
    shot("queued")
    broadcast_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    with community.db() as db:
        assert db.fetchval("SELECT COUNT(*) FROM broadcasts") == broadcasts_before + 1
        rows = db.fetchall(
            "SELECT chat_id, status, text FROM outbox WHERE kind = 'broadcast' AND dedupe_key = ?",
            (f"broadcast:{broadcast_id}:{ANNA}",),
        )
        assert db.fetchval("SELECT COUNT(*) FROM outbox WHERE kind = 'broadcast'") == before + 1
    assert [(r["chat_id"], r["status"], r["text"]) for r in rows] == [(ANNA, "queued", TEXT)]
    expect(page.locator("td[data-status=queued]")).to_have_text("1")
    expect(page.locator("#broadcast-summary")).to_contain_text("Идёт отправка")
    # The same confirmation once more from this session, after the first was done (as a
    # reload of the POST would): it shows the broadcast and sends nothing.
    again = page.request.post(
        "/admin/domain/member/broadcasts/new/", form={**confirmation, "step": "send"}
    )
    assert again.ok, again.status
    assert again.url.endswith(f"/broadcasts/{broadcast_id}/")
    assert "Эта рассылка уже отправлена" in again.text()
    with community.db() as db:
        assert db.fetchval("SELECT COUNT(*) FROM broadcasts") == broadcasts_before + 1
        assert db.fetchval("SELECT COUNT(*) FROM outbox WHERE kind = 'broadcast'") == before + 1

    # notifymonitor delivers it (its programs are stopped here: the row is marked as it would).
    with community.db() as db:
        db.execute(
            "UPDATE outbox SET status = 'sent', sent_at = CURRENT_TIMESTAMP, attempts = 1"
            " WHERE dedupe_key = ?",
            (f"broadcast:{broadcast_id}:{ANNA}",),
        )
    page.reload()
    expect(page.locator("td[data-status=sent]")).to_have_text("1")
    expect(page.locator("#broadcast-summary")).to_contain_text("Готово: отправлено 1")
    shot("delivered")
    page.click(".breadcrumbs >> text=Рассылки")
    row = page.locator("#broadcasts tbody tr", has=page.locator(f"a:text-is('{broadcast_id}')"))
    expect(row).to_contain_text("все активные")
    shot("listed")


def test_a_members_timeline(staff_page: Page, shot: Shot, community: Community) -> None:
    page = staff_page
    visit(page, f"/admin/domain/member/?q={BORIS}")
    page.locator("#result_list tbody tr th a, #result_list tbody tr td a").first.click()
    page.wait_for_load_state()
    shot("member")
    page.click("#member-timeline")
    expect(page).to_have_url(re.compile(rf"/member/{member_id(community, BORIS)}/timeline/$"))
    shot("timeline")
    # Boris paid, had a subscription, lapsed into grace and out, was banned, got messages.
    kinds = set(
        page.locator("#timeline tr.entry").evaluate_all("rows => rows.map(r => r.dataset.kind)")
    )
    assert kinds == {"payment", "subscription", "moderation", "message"}, kinds
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text("оплачен")
    expect(timeline).to_contain_text("Подписка оформлена")
    expect(timeline).to_contain_text("Подписка истекла")
    expect(timeline).to_contain_text("Бан в чате")
    stamps = [
        datetime.fromisoformat(value)
        for value in page.locator("#timeline time").evaluate_all(
            "times => times.map(t => t.getAttribute('datetime'))"
        )
    ]
    assert stamps == sorted(stamps, reverse=True), stamps
    # Each entry opens its row: the ban.
    page.locator("#timeline a", has_text="Бан в чате").first.click()
    expect(page).to_have_url(re.compile(r"/admin/domain/moderationaction/\d+/change/$"))
    shot("the ban")


def test_payments_csv_export(
    staff_page: Page, shot: Shot, community: Community, artifacts_dir: Path
) -> None:
    page = staff_page
    visit(page, "/admin/domain/payment/")
    page.click("#payments-export")
    expect(page.locator("#payment_export")).to_be_visible()
    # The month-later part moved the monitors' clock forward: a range that holds every payment.
    today = datetime.now().date()
    first, last = today - timedelta(days=2), today + timedelta(days=62)
    page.fill("#id_first", first.isoformat())
    page.fill("#id_last", last.isoformat())
    page.select_option("#id_delimiter", ";")
    shot("export form")
    with page.expect_download() as info:
        page.click("#payment_export button[type=submit]")
    download = info.value
    assert download.suggested_filename == f"payments_{first}_{last}.csv"
    saved = artifacts_dir / f"payments-{community.backend}.csv"
    download.save_as(saved)
    body = saved.read_text(encoding="utf-8")
    assert body.startswith("\ufeff")
    header, *rows = list(csv.reader(io.StringIO(body[1:], newline=""), delimiter=";"))
    assert header[0] == "id"
    assert "amount" in header
    with community.db() as db:
        expected: list[Any] = db.fetchall(
            "SELECT id, provider_payment_id FROM payments ORDER BY id"
        )
    column = header.index("provider_payment_id")
    assert sorted((int(r[0]), r[column]) for r in rows) == [
        (e["id"], e["provider_payment_id"] or "") for e in expected
    ]
    shot("downloaded")
