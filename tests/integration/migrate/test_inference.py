"""Issue 17: in infer mode the stored values choose a column's type, the declared type breaks ties.

The table of the issue: a bot's `payments` whose declared types (JSON, DECIMAL(10,2), BOOLEAN,
DATETIME, MONEY) all have NUMERIC affinity in SQLite. Planned from the affinity, every row was
rejected (`text_in_numeric_column`); planned from the stored values, every row arrives.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.config import DatabaseSettings, Secret
from runtime.db import sync_database
from runtime.migrate.engine import verify_only
from runtime.migrate.plan import Source
from runtime.migrate.run import Options

pytestmark = pytest.mark.postgres

ROWS = 3000


def _payments(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE payments (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                user_id INTEGER NOT NULL,
                payment_id TEXT UNIQUE,
                amount DECIMAL(10,2),
                fee DECIMAL(10,2),
                price MONEY,
                payload JSON,
                raw JSON,
                is_recurrent BOOLEAN DEFAULT 0,
                created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
                paid_at TIMESTAMP,
                due DATE,
                note
            );
            """
        )
        rows = []
        for i in range(1, ROWS + 1):
            payload = {"id": f"2c5b-{i}", "status": "succeeded", "amount": {"value": "990.00"}}
            rows.append(
                (
                    i,
                    100 + i % 50,
                    f"pay-{i}",
                    990.0 if i % 3 else "1490.00",  # a real, or text as YooKassa sends it
                    0.1 + 0.2 if i == 77 else 9.9,  # one value numeric(10,2) would round
                    i * 1.5,
                    json.dumps(payload, ensure_ascii=i % 2 == 0) if i % 10 else None,
                    '{"nul": "\\u0000"}' if i == 5 else "[1, 2.50, 1e2]",
                    i % 2 if i % 7 else ("true" if i % 2 else "false"),
                    f"2024-01-{1 + i % 28:02d} 10:{i % 60:02d}:00",
                    1704164645 + i if i % 4 else None,  # unix seconds
                    f"2024-02-{1 + i % 28:02d}",
                    i if i % 2 else f"n{i}",
                )
            )
        conn.executemany(
            "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
    conn.close()


def _columns(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (table,) = report["sources"][0]["tables"]
    return {c["source"]: c for c in table["columns"]}


def test_a_json_declared_payments_table_arrives_whole_with_natural_types(
    pg_url: str, run_migration: Any, tmp_path: Path
) -> None:
    source = tmp_path / "bot.sqlite"
    _payments(source)

    code, report = run_migration(pg_url, {source: "bot"}, chunk_rows=1000)

    (table,) = report["sources"][0]["tables"]
    assert table["rejects"] == {}, table["rejects"]
    assert code == 0, (table["problems"], table["verification_problems"])
    assert table["rows_written"] == ROWS
    assert table["verified"] is True, table["verification_problems"]
    columns = _columns(report)
    assert {name: c["type"] for name, c in columns.items()} == {
        "id": "bigint",
        "user_id": "bigint",
        "payment_id": "text",
        "amount": "numeric(10,2)",
        "fee": "numeric",  # 0.30000000000000004 does not fit numeric(10,2): wider
        "price": "numeric",
        "payload": "json",
        "raw": "json",  # \u0000 is valid JSON that jsonb would refuse
        "is_recurrent": "boolean",
        "created_at": "timestamp with time zone",
        "paid_at": "timestamp with time zone",
        "due": "date",
        "note": "text",
    }
    assert columns["payload"]["classes"] == {"text": 2700, "null": 300}
    # NUMERIC affinity stores 990.0 and '1490.00' as the integers they equal.
    assert columns["amount"]["classes"] == {"integer": 3000}
    assert columns["price"]["classes"] == {"integer": 1500, "real": 1500}
    assert "every value" in columns["payload"]["rule"]
    assert "1 of 3000 values do not fit numeric(10,2)" in columns["fee"]["rule"]

    with psycopg.connect(pg_url, options="-c TimeZone=UTC") as conn:
        row = conn.execute(
            "SELECT amount, fee, payload->'amount'->>'value', raw::text, is_recurrent, "
            "created_at, paid_at, due, note FROM bot.payments WHERE id = 3"
        ).fetchone()
        assert row == (
            Decimal("1490.00"),
            Decimal("9.9"),
            "990.00",
            "[1, 2.50, 1e2]",
            True,
            datetime(2024, 1, 4, 10, 3, tzinfo=UTC),
            datetime(2024, 1, 2, 3, 4, 8, tzinfo=UTC),
            date(2024, 2, 4),
            "3",
        )
        (fee,) = conn.execute("SELECT fee::text FROM bot.payments WHERE id = 77").fetchone()
        assert fee == "0.30000000000000004"
        (raw,) = conn.execute("SELECT raw::text FROM bot.payments WHERE id = 5").fetchone()
        assert raw == '{"nul": "\\u0000"}'
        # json keeps the text as the application wrote it: escapes, spacing and key order.
        migrated = conn.execute("SELECT id, payload::text FROM bot.payments ORDER BY id").fetchall()
    with sqlite3.connect(source) as legacy:
        assert migrated == legacy.execute("SELECT id, payload FROM payments ORDER BY id").fetchall()

    # Verified again on its own, and a changed JSON text in the target is found.
    options = Options(
        sources=[Source("bot", source, "bot")],
        target_url=pg_url,
        work_dir=tmp_path / "verify",
        progress=False,
    )
    assert verify_only(options)[0] == 0
    with psycopg.connect(pg_url) as conn:
        # The same JSON value, spelt otherwise: a byte-for-byte copy is what was promised.
        conn.execute("UPDATE bot.payments SET payload = payload::jsonb::text::json WHERE id = 2001")
    code, again = verify_only(options)
    assert code == 1
    assert "content hash differs" in again["sources"][0]["tables"][0]["verification_problems"]

    # The application goes on writing through the DB layer, which sends a dict as jsonb: it is
    # assigned to the json column and comes back decoded, as on SQLite.
    settings = DatabaseSettings(
        type="postgres", data_dir=tmp_path, sqlite_paths={}, postgres_url=Secret(pg_url)
    )
    with sync_database(settings) as db:
        payload = {"id": "new", "status": "succeeded", "amount": {"value": "1.50"}}
        db.execute(
            "INSERT INTO bot.payments (id, user_id, amount, payload) VALUES (?, ?, ?, ?)",
            (ROWS + 1, 7, "1.50", payload),
        )
        row = db.fetchone("SELECT payload FROM bot.payments WHERE id = ?", (ROWS + 1,))
        assert row is not None
        assert row["payload"] == payload
        db.execute("DELETE FROM bot.payments WHERE id = ?", (ROWS + 1,))

    # What docs/cutover.md tells an operator who wants jsonb's operators: one statement.
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "ALTER TABLE bot.payments ALTER COLUMN payload TYPE jsonb USING payload::jsonb"
        )
        (found,) = conn.execute(
            "SELECT count(*) FROM bot.payments WHERE payload @> %s::jsonb",
            ('{"status": "succeeded"}',),
        ).fetchone()
        assert found == 2700


def test_dry_run_shows_per_column_the_classes_seen_the_type_and_why(
    pg_url: str, run_migration: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bot.sqlite"
    _payments(source)
    code, report = run_migration(pg_url, {source: "bot"}, dry_run=True)
    assert code == 0
    out = capsys.readouterr().out
    assert (
        "    payload -> payload json\n"
        "        stored: text 2700, null 300\n"
        "        why: declared JSON; every value (2700 text) parses as JSON: json, the text kept "
        "as is\n"
    ) in out
    assert (
        '    note -> note text collate "C"\n'
        "        stored: integer 1500, text 1500\n"
        "        why: no declared type; holds 1500 integer, 1500 text: text"
    ) in out
    assert _columns(report)["is_recurrent"]["classes"] == {"integer": 2572, "text": 428}
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regnamespace('bot')").fetchone() == (None,)
