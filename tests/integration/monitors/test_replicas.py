"""Two instances of each work-claiming monitor, each with its own pool, against one PostgreSQL
with a backlog: every item is handled exactly once.

(notifymonitor and recurrent_payments have their own two-replica tests beside their others.)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from monitors.ban_monitor import BanMonitor
from monitors.parse_messages import ParseMessages
from monitors.payment_monitor import PaymentMonitor
from runtime.config import Settings
from runtime.db import AsyncDatabase, async_database
from tests.conftest import database_environ
from tests.integration.monitors import factories as f
from tests.integration.monitors.conftest import Monitors, empty_domain_tables
from tests.integration.monitors.test_parse_messages import CHAT, inbox, paid_chat

pytestmark = pytest.mark.postgres


@pytest.fixture
def database_environ_vars(migrated_pg_url: str, tmp_path: Path) -> dict[str, str]:
    """PostgreSQL only: replicas of a claiming monitor share one server (SKIP LOCKED)."""
    empty_domain_tables(migrated_pg_url)
    return database_environ("postgres", str(tmp_path / "data"), migrated_pg_url)


@pytest.fixture
async def two_instances(monitor_environ: dict[str, str], db: Any, monkeypatch: Any):
    opened: list[tuple[AsyncDatabase, Monitors]] = []

    async def start(cls: Any, **env: str) -> list[Any]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        instances = []
        for _ in range(2):
            own = async_database(Settings.from_env(monitor_environ))
            await own.open()
            holder = Monitors(monitor_environ, own)
            opened.append((own, holder))
            instances.append(await holder.start(cls))
        return instances

    yield start
    for own, holder in opened:
        for monitor in holder.started:
            await monitor.teardown()
        await own.close()


async def run_together(instances: list[Any], rounds: int = 3) -> None:
    for _ in range(rounds):
        await asyncio.gather(*(monitor.tick() for monitor in instances))


async def test_payment_monitor_replicas_apply_each_payment_once(db, sandbox, two_instances):
    tariff_id = await f.tariff(db)
    await f.managed_chat(db, sandbox)
    users = []
    for _ in range(12):
        user = await f.member(db, sandbox)
        provider = await f.provider_payment(sandbox)
        await f.local_payment(db, user, tariff_id, provider)
        paid = await sandbox.control("POST", f"/yookassa/payments/{provider['id']}/succeed", {})
        await f.provider_event(db, paid)
        users.append(user)
    await run_together(await two_instances(PaymentMonitor))

    events = await db.fetchall("SELECT outcome, attempts FROM provider_events")
    assert len(events) == 12
    assert Counter(e["attempts"] for e in events) == {1: 12}  # none handled twice
    receipts = await db.fetchall("SELECT user_id FROM outbox WHERE kind = 'receipt'")
    assert sorted(r["user_id"] for r in receipts) == sorted(u["id"] for u in users)
    links = await sandbox.control("GET", "/telegram/invite_links")
    assert len(links) == 12
    subs = await db.fetchall("SELECT user_id FROM subscriptions")
    assert len(subs) == 12


async def test_ban_monitor_replicas_ban_each_member_once(db, sandbox, two_instances):
    chat = await f.managed_chat(db, sandbox)
    tariff_id = await f.tariff(db)
    for _ in range(15):
        user = await f.member(db, sandbox)
        await f.join(db, sandbox, user, chat)
        await f.subscription(db, user, tariff_id, status="expired", ends_in=timedelta(days=-9))
    await run_together(await two_instances(BanMonitor))

    actions = await db.fetchall("SELECT status, attempts FROM moderation_actions")
    assert [(a["status"], a["attempts"]) for a in actions] == [("done", 1)] * 15
    calls = await sandbox.control("GET", f"/telegram/actions?chat_id={chat['telegram_chat_id']}")
    banned = Counter(c["user_id"] for c in calls if c["action"] == "banned")
    assert len(banned) == 15
    assert set(banned.values()) == {1}


async def test_parse_messages_replicas_parse_each_message_once(db, sandbox, two_instances):
    await paid_chat(db)
    for number in range(40):
        await inbox(db, CHAT, f"#полезное заметка номер {number} про ипотеку")
    await run_together(await two_instances(ParseMessages, PARSE_BATCH_SIZE="7"), rounds=5)

    rows = await db.fetchall("SELECT parse_status, parse_attempts FROM chat_messages", db="useful")
    assert [(r["parse_status"], r["parse_attempts"]) for r in rows] == [("parsed", 1)] * 40
    assert len(await db.fetchall("SELECT id FROM useful_messages", db="useful")) == 40
