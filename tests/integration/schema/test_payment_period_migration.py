"""main/0010: payments.period_days, the days a payment buys fixed when it is created.

Rows made before it keep NULL (payment_monitor and recurrent_payments then apply the tariff's
period, as before: tests/integration/monitors/test_payment_period.py); nothing else of them
moves; a period of zero or fewer days is refused on either backend."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from runtime.db.migrations import upgrade
from runtime.errors import CheckViolation

SCHEMA = Path(__file__).resolve().parents[3] / "runtime" / "schema" / "main"


async def test_payments_made_before_keep_no_period_and_new_ones_need_a_positive_one(
    async_db: Any, tmp_path: Path
) -> None:
    root = tmp_path / "schema" / "main"
    root.mkdir(parents=True)
    before = [path for path in sorted(SCHEMA.glob("*.sql")) if path.name < "0010"]
    for path in before:
        shutil.copy(path, root)
    await upgrade(async_db, ["main"], schema_root=root.parent)
    tariff = await async_db.fetchval(
        "INSERT INTO tariffs (code, title, price_minor, period_days)"
        " VALUES ('m', 'M', 99000, 30) RETURNING id"
    )
    user = await async_db.fetchval("INSERT INTO users (telegram_id) VALUES (1001) RETURNING id")
    old = await async_db.fetchval(
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor,"
        " description) VALUES ('old', ?, ?, 'first', 99000, 'Подписка «M» на 30 дн.')"
        " RETURNING id",
        (user, tariff),
    )
    row_before = dict(await async_db.fetchone("SELECT * FROM payments WHERE id = ?", (old,)))

    for path in sorted(SCHEMA.glob("*.sql")):
        if path not in before:
            shutil.copy(path, root)
    applied = await upgrade(async_db, ["main"], schema_root=root.parent)

    assert (10, "payment_period") in [(a.version, a.name) for a in applied]
    row = dict(await async_db.fetchone("SELECT * FROM payments WHERE id = ?", (old,)))
    assert row.pop("period_days") is None
    assert row == row_before
    await async_db.execute(
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor,"
        " period_days) VALUES ('new', ?, ?, 'first', 99000, 30)",
        (user, tariff),
    )
    with pytest.raises(CheckViolation):
        await async_db.execute(
            "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor,"
            " period_days) VALUES ('none', ?, ?, 'first', 99000, 0)",
            (user, tariff),
        )
