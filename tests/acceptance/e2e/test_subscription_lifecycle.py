"""Issue 5, end to end with the real programs: pay, join, run out, get banned, pay again, rejoin.

sandbox (Telegram + YooKassa, webhooks to botapi), botapi and the bot run as processes; the
monitors run as `domos monitor NAME --once` on a moved business clock (DOMOS_CLOCK_OFFSET_S),
with the sandbox clock moved alongside. At the end: no message was sent twice and no payment
was charged twice.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitors.decisions.reminders import term_reminder_times
from runtime.config import Settings
from tests.acceptance.e2e.programs import World, environ_for, open_db
from tests.integration.bot.conftest import ROOT, free_port, http_json, wait_for

_ids = itertools.count(int(time.time()) % 100_000 * 1000 + 700_000_000)
MINUTE = timedelta(minutes=1)


@pytest.fixture(
    params=[
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("sqlite", id="sqlite"),
    ]
)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    import subprocess

    from tests.acceptance.e2e.programs import DOMOS

    backend: str = request.param
    pg_url = None
    if backend == "postgres":
        pg_url = request.getfixturevalue("make_pg_database")(
            template=request.getfixturevalue("pg_template")
        )
    sandbox_port, botapi_port = free_port(), free_port()
    environ = environ_for(backend, tmp_path, pg_url, sandbox_port)
    # Reminders at local midnight: every T-n moment lies before the period end, whatever the hour.
    environ["TS_REMINDER_AT"] = "00:00"
    subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, check=True, capture_output=True
    )
    db = open_db(environ)
    world = World(environ, tmp_path, f"http://127.0.0.1:{sandbox_port}", db)
    try:
        world.start(
            "sandbox",
            [
                "sandbox",
                "--port",
                str(sandbox_port),
                "--no-limits",
                "--webhook-url",
                f"http://127.0.0.1:{botapi_port}/yookassa/webhook",
            ],
            lambda _: _status(f"{world.sandbox_base}/_sandbox/health") == 200,
        )
        world.start(
            "botapi",
            ["botapi", "--port", str(botapi_port)],
            lambda _: _status(f"http://127.0.0.1:{botapi_port}/health") == 200,
        )
        # Importing aiogram takes seconds of CPU on a loaded machine: patience.
        world.start("bot", ["bot"], lambda program: '"bot_started"' in program.logs())
        yield world
    finally:
        world.stop_all()
        db.close()


def _status(url: str) -> int:
    try:
        return http_json("GET", url)[0]
    except OSError:
        return 0


def _subscription(world: World, user_id: int) -> dict[str, Any]:
    rows = world.db.fetchall(
        "SELECT * FROM subscriptions WHERE user_id = ? ORDER BY current_period_end DESC, id DESC",
        (user_id,),
    )
    assert rows, "no subscription"
    return dict(rows[0])


def _pay(world: World, telegram_id: int, user_id: int) -> str:
    """/subscribe, pay at the provider, webhook to botapi, payment_monitor applies it."""
    before = len(world.sent(telegram_id))
    world.control("POST", "/telegram/messages", {"user_id": telegram_id, "text": "/subscribe"})
    reply = wait_for(lambda: world.sent(telegram_id)[before:], 20, "the payment link")[0]
    payment = world.db.fetchone(
        "SELECT * FROM payments WHERE user_id = ? AND status = 'pending'", (user_id,)
    )
    assert payment is not None
    assert payment["provider_payment_id"]
    provider_id = str(payment["provider_payment_id"])
    assert payment["confirmation_url"] in reply["text"]
    world.control("POST", f"/yookassa/payments/{provider_id}/succeed")
    wait_for(
        lambda: world.db.fetchone(
            "SELECT id FROM provider_events WHERE object_id = ?", (provider_id,)
        ),
        20,
        "the webhook to reach botapi",
    )
    world.monitor_once("payment_monitor")
    status = world.db.fetchval("SELECT status FROM payments WHERE id = ?", (payment["id"],))
    assert status == "succeeded"
    return provider_id


def _deliver(world: World, telegram_id: int, expect: int) -> list[dict[str, Any]]:
    """notifymonitor once; exactly `expect` new messages reach the member."""
    before = len(world.sent(telegram_id))
    world.monitor_once("notifymonitor")
    new = world.sent(telegram_id)[before:]
    assert len(new) == expect, [m["text"] for m in new]
    return new


def _follow(world: World, telegram_id: int, receipt: dict[str, Any], chat_id: int) -> str | None:
    """The member's way in, as the receipt gives it: follow its link; the bot decides the join
    request the link makes. Returns the user's status in the chat afterwards."""
    [link] = re.findall(r"https://t\.me/\+\S+", receipt["text"])
    world.control(
        "POST", "/telegram/invite_links/join", {"user_id": telegram_id, "invite_link": link}
    )
    wait_for(
        lambda: not world.control("GET", f"/telegram/join_requests?chat_id={chat_id}"),
        20,
        "the join request to be decided",
    )
    members = world.control("GET", f"/telegram/chats/{chat_id}/members")
    status: str | None = {m["user_id"]: m["status"] for m in members}.get(telegram_id)
    return status


def _forwarded_to_a_stranger(world: World, receipt: dict[str, Any], chat_id: int) -> None:
    """The receipt's link, forwarded (or sold) to someone who never paid, lets them in neither
    before the payer used it nor after."""
    stranger = next(_ids)
    world.control("POST", "/telegram/users", {"user_id": stranger, "first_name": "Чужой"})
    assert _follow(world, stranger, receipt, chat_id) != "member"


def _banned(world: World, chat_id: int) -> Callable[[int], bool]:
    def banned(telegram_id: int) -> bool:
        bans = world.control("GET", f"/telegram/bans?chat_id={chat_id}")
        return any(ban["user_id"] == telegram_id for ban in bans)

    return banned


def test_member_pays_runs_out_is_banned_pays_again_and_rejoins(world: World) -> None:
    tz = Settings.from_env(world.environ).timezone
    world.db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)",
        ("month", "Месяц", 150000, 30),
    )
    telegram_id = next(_ids)
    chat_id = -(1_000_000_000_000 + next(_ids))
    world.control("POST", "/telegram/users", {"user_id": telegram_id, "first_name": "Агент"})
    world.control(
        "POST", "/telegram/chats", {"id": chat_id, "type": "supergroup", "title": "Агенты PRO"}
    )
    # Staff mark it paid in the admin (the bot never learns paid chats from updates).
    world.db.execute(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', ?)",
        (chat_id, True),
    )
    banned = _banned(world, chat_id)

    # 1. /start registers; /subscribe, pay, webhook, payment_monitor: active.
    world.control("POST", "/telegram/messages", {"user_id": telegram_id, "text": "/start"})
    wait_for(lambda: world.sent(telegram_id), 20, "the /start reply")
    user_id = int(world.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,)))
    first_payment = _pay(world, telegram_id, user_id)
    subscription = _subscription(world, user_id)
    assert subscription["status"] == "active"
    [receipt] = _deliver(world, telegram_id, expect=1)
    _forwarded_to_a_stranger(world, receipt, chat_id)
    assert _follow(world, telegram_id, receipt, chat_id) == "member"
    _forwarded_to_a_stranger(world, receipt, chat_id)

    # 2. The term runs out: each T-n reminder once, even with tsmonitor run twice.
    end: datetime = subscription["current_period_end"]
    due = term_reminder_times(end, tz, send_at=datetime.min.time())
    margin = min(MINUTE, (end - due["T-0"]) / 2)
    for kind, phrase in (
        ("T-7", "через 7 дн."),
        ("T-3", "через 3 дн."),
        ("T-1", "через 1 дн."),
        ("T-0", "сегодня"),
    ):
        world.move_clock_to(due[kind] + margin)
        world.monitor_once("tsmonitor")
        world.monitor_once("tsmonitor")
        [reminder] = _deliver(world, telegram_id, expect=1)
        assert phrase in reminder["text"], (kind, reminder["text"])

    # 3. Past the end: grace, still in the chat; past grace: expired and banned.
    world.move_clock_to(end + MINUTE)
    world.monitor_once("tsmonitor")
    assert _subscription(world, user_id)["status"] == "grace"
    world.monitor_once("ban_monitor")
    assert not banned(telegram_id)
    _deliver(world, telegram_id, expect=1)  # the grace notice
    grace_until: datetime = _subscription(world, user_id)["grace_until"]
    world.move_clock_to(grace_until + MINUTE)
    world.monitor_once("tsmonitor")
    assert _subscription(world, user_id)["status"] == "expired"
    world.monitor_once("ban_monitor")
    assert banned(telegram_id)
    world.monitor_once("ban_monitor")
    world.monitor_once("tsmonitor")
    expired_notices = _deliver(world, telegram_id, expect=1)
    assert expired_notices

    # 4. Pays again: active, unbanned, and the join request is approved.
    second_payment = _pay(world, telegram_id, user_id)
    assert _subscription(world, user_id)["status"] == "active"
    world.monitor_once("ban_monitor")
    assert not banned(telegram_id)
    [receipt] = _deliver(world, telegram_id, expect=1)  # the receipt of the second payment
    _forwarded_to_a_stranger(world, receipt, chat_id)
    assert _follow(world, telegram_id, receipt, chat_id) == "member"

    # Nothing twice: each outbox row reached the member once, each payment was charged once.
    world.monitor_once("notifymonitor")
    sent_texts = Counter(m["text"] for m in world.sent(telegram_id))
    outbox = world.db.fetchall(
        "SELECT dedupe_key, text, status FROM outbox WHERE chat_id = ?", (telegram_id,)
    )
    assert all(row["status"] == "sent" for row in outbox), outbox
    outbox_texts = Counter(row["text"] for row in outbox)
    for text, count in outbox_texts.items():
        assert sent_texts[text] == count, text
    payments = world.control("GET", "/yookassa/payments")
    ours = [p for p in payments if p["id"] in {first_payment, second_payment}]
    assert [p["status"] for p in ours] == ["succeeded", "succeeded"]
    assert first_payment != second_payment
    charged = world.db.fetchall(
        "SELECT provider_payment_id FROM payments WHERE user_id = ? AND status = 'succeeded'",
        (user_id,),
    )
    assert sorted(row["provider_payment_id"] for row in charged) == sorted(
        [first_payment, second_payment]
    )
    assert len(payments) == 2, "no other charge at the provider"
