"""main/0004: charges recurrent_payments applied are marked confirmed (their renewal receipt is
their confirmation); payments still to be confirmed by payment_monitor are left alone."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runtime.db.migrations import upgrade

SCHEMA = Path(__file__).resolve().parents[3] / "runtime" / "schema" / "main"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


async def _payment(db: Any, key: str, sub: int, status: str, *, charge: bool) -> int:
    payment: int = await db.fetchval(
        "INSERT INTO payments (idempotence_key, provider_payment_id, user_id, tariff_id,"
        " subscription_id, kind, amount_minor, status, paid_at, processed_at)"
        " VALUES (?, ?, (SELECT id FROM users), (SELECT id FROM tariffs), ?, 'renewal', 100, ?,"
        " ?, ?) RETURNING id",
        (key, f"p-{key}", sub, status, T0 if status == "succeeded" else None, T0),
    )
    if charge:
        await db.execute(
            "INSERT INTO charge_attempts (subscription_id, period_end, attempt_no,"
            " idempotence_key, payment_id, amount_minor, status, decline_kind)"
            " VALUES (?, ?, (SELECT count(*) + 1 FROM charge_attempts), ?, ?, 100, ?, ?)",
            (
                sub,
                T0,
                f"charge-{key}",
                payment,
                "succeeded" if status == "succeeded" else "declined",
                None if status == "succeeded" else "soft",
            ),
        )
    return payment


async def test_applied_charges_are_marked_confirmed_and_nothing_else(
    async_db: Any, tmp_path: Path
) -> None:
    root = tmp_path / "schema" / "main"
    root.mkdir(parents=True)
    for path in sorted(SCHEMA.glob("000[123]_*.sql")):
        shutil.copy(path, root)
    await upgrade(async_db, ["main"], schema_root=root.parent)
    await async_db.execute("INSERT INTO users (telegram_id) VALUES (1001)")
    await async_db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('m', 'M', 100, 30)"
    )
    sub = await async_db.fetchval(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end) VALUES ((SELECT id FROM users), (SELECT id FROM tariffs),"
        " 'active', ?, ?) RETURNING id",
        (T0, T0 + timedelta(days=30)),
    )
    charged = await _payment(async_db, "a", sub, "succeeded", charge=True)
    declined = await _payment(async_db, "b", sub, "canceled", charge=True)
    by_hand = await _payment(async_db, "c", sub, "succeeded", charge=False)

    shutil.copy(SCHEMA / "0004_payment_ownership.sql", root)
    applied = await upgrade(async_db, ["main"], schema_root=root.parent)

    assert [(a.version, a.name) for a in applied] == [(4, "payment_ownership")]
    rows = {
        row["id"]: row["confirmed_at"]
        for row in await async_db.fetchall("SELECT id, confirmed_at FROM payments")
    }
    assert rows == {charged: T0, declined: None, by_hand: None}
