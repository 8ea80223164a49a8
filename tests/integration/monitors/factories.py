"""Rows and sandbox state the monitor tests start from: members, tariffs, chats, payments."""

from __future__ import annotations

import base64
import itertools
import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.api.errors import ApiError
from services.api.models import PaymentCreate
from services.api.payments import PaymentService
from tests.integration.monitors.conftest import Sandbox, utcnow

_chat_ids = itertools.count(1_001_000_000_001)


async def tariff(db: Any, *, days: int = 30, price_minor: int = 99000) -> int:
    tariff_id: int = await db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO UPDATE SET title = excluded.title RETURNING id",
        (f"days{days}", f"{days} дней", price_minor, days),
    )
    return tariff_id


async def member(db: Any, sandbox: Sandbox, *, role: str = "member") -> dict[str, Any]:
    """A Telegram user known to the sandbox and a users row."""
    telegram_id = await sandbox.new_user()
    user_id = await db.fetchval(
        "INSERT INTO users (telegram_id, first_name, role) VALUES (?, 'Агент', ?) RETURNING id",
        (telegram_id, role),
    )
    return {"id": user_id, "telegram_id": telegram_id}


async def managed_chat(db: Any, sandbox: Sandbox, *, title: str = "Клуб агентов") -> dict[str, Any]:
    telegram_chat_id = -next(_chat_ids)
    await sandbox.control(
        "POST", "/telegram/chats", {"id": telegram_chat_id, "type": "supergroup", "title": title}
    )
    chat_id = await db.fetchval(
        "INSERT INTO chats (telegram_chat_id, title, kind, is_managed)"
        " VALUES (?, ?, 'supergroup', ?) RETURNING id",
        (telegram_chat_id, title, True),
    )
    return {"id": chat_id, "telegram_chat_id": telegram_chat_id}


async def join(db: Any, sandbox: Sandbox, user: dict[str, Any], chat: dict[str, Any]) -> None:
    """The member is in the chat, at the sandbox and in memberships."""
    await sandbox.control(
        "POST",
        f"/telegram/chats/{chat['telegram_chat_id']}/members",
        {"user_id": user["telegram_id"], "status": "member"},
    )
    await db.execute(
        "INSERT INTO memberships (user_id, chat_id, status, joined_at) VALUES (?, ?, 'member', ?)",
        (user["id"], chat["id"], utcnow()),
    )


async def chat_status(sandbox: Sandbox, chat: dict[str, Any], user: dict[str, Any]) -> str:
    members = await sandbox.control("GET", f"/telegram/chats/{chat['telegram_chat_id']}/members")
    for row in members:
        if row["user_id"] == user["telegram_id"]:
            return str(row["status"])
    return "left"


async def subscription(
    db: Any,
    user: dict[str, Any],
    tariff_id: int,
    *,
    status: str = "active",
    ends_in: timedelta = timedelta(days=10),
    days: int = 30,
    grace_until: Any = None,
    auto_renew: bool = False,
) -> dict[str, Any]:
    end = utcnow() + ends_in
    sub_id = await db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, grace_until, auto_renew) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (user["id"], tariff_id, status, end - timedelta(days=days), end, grace_until, auto_renew),
    )
    return dict(await db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub_id,)))


async def provider_payment(sandbox: Sandbox, *, save_method: bool = True) -> dict[str, Any]:
    """A pending payment at the sandbox YooKassa, as the API creates it for a first purchase."""
    token = base64.b64encode(b"100500:test_sandbox_secret_key").decode()
    body = {
        "amount": {"value": "990.00", "currency": "RUB"},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": "https://t.me/domos_bot"},
        "description": "Подписка на 30 дней",
        "save_payment_method": save_method,
    }
    async with sandbox.http.post(
        f"{sandbox.base}/v3/payments",
        json=body,
        headers={"Idempotence-Key": str(uuid.uuid4()), "Authorization": f"Basic {token}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        payment: dict[str, Any] = await resp.json()
    return payment


async def local_payment(
    db: Any,
    user: dict[str, Any],
    tariff_id: int,
    provider: dict[str, Any],
    *,
    age: timedelta = timedelta(minutes=30),
) -> int:
    """The payments row the API committed for `provider` (created `age` ago)."""
    created = utcnow() - age
    payment_id: int = await db.fetchval(
        "INSERT INTO payments (provider_payment_id, idempotence_key, user_id, tariff_id, kind,"
        " amount_minor, status, save_payment_method, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, 'first', 99000, 'pending', ?, ?, ?) RETURNING id",
        (provider["id"], str(uuid.uuid4()), user["id"], tariff_id, True, created, created),
    )
    return payment_id


async def provider_event(db: Any, payment: dict[str, Any], event: str = "payment.succeeded") -> int:
    """What botapi inserts for a YooKassa notification."""
    event_id: int = await db.fetchval(
        "INSERT INTO provider_events (event_key, event_type, object_id, payload)"
        " VALUES (?, ?, ?, ?) RETURNING id",
        (
            f"{event}:{payment['id']}",
            event,
            payment["id"],
            {"type": "notification", "event": event, "object": payment},
        ),
    )
    return event_id


async def lost_create(
    db: Any,
    sandbox: Sandbox,
    payments: PaymentService,
    *,
    reached_provider: bool,
    age: timedelta,
    user: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A payment the API committed whose create call failed: it reached YooKassa (answer lost)
    or not. A member with a live subscription makes it a renewal paid by hand."""
    user = user or await member(db, sandbox)
    await tariff(db)
    # "timeout": YooKassa creates the payment and the answer comes too late; "500": it does not.
    fault = {"mode": "timeout", "delay_s": 1.0} if reached_provider else {"mode": "500"}
    await sandbox.control("POST", "/faults", {"api": "yookassa", "count": 1, **fault})
    request = PaymentCreate(telegram_id=user["telegram_id"], tariff_code="days30")
    with pytest.raises(ApiError) as failed:
        await payments.create(request, client_key=f"order-{user['telegram_id']}")
    assert failed.value.status == 502
    row = await db.fetchone("SELECT * FROM payments WHERE user_id = ?", (user["id"],))
    assert (row["status"], row["provider_payment_id"]) == ("created", None)
    created = utcnow() - age
    await db.execute("UPDATE payments SET created_at = ? WHERE id = ?", (created, row["id"]))
    return {"user": user, "id": row["id"], "key": row["idempotence_key"], "kind": row["kind"]}


async def at_provider(sandbox: Sandbox, payment_id: int) -> list[dict[str, Any]]:
    """The sandbox's payments made for our row (its request carries the row id)."""
    payments = await sandbox.control("GET", "/yookassa/payments")
    return [p for p in payments if p["metadata"].get("payment_row") == str(payment_id)]
