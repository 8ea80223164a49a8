"""The work-claiming tables work with the DB layer's claim helper, and the monitors' queries are
served by the indexes made for them, on both backends."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from runtime.db import Database
from runtime.logical_databases import LOGICAL_DATABASES

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PAST, FUTURE = T0 - timedelta(minutes=5), T0 + timedelta(hours=1)

MEMBER = [
    "INSERT INTO users (telegram_id) VALUES (1001)",
    "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('m', 'M', 99000, 30)",
    "INSERT INTO chats (telegram_chat_id, kind) VALUES (-100, 'supergroup')",
]
USER, TARIFF, CHAT = (
    "(SELECT id FROM users)",
    "(SELECT id FROM tariffs)",
    "(SELECT id FROM chats)",
)


@dataclass(frozen=True)
class Queue:
    table: str
    logical_db: str
    #: statements run first (rows the queue items refer to)
    setup: tuple[str, ...]
    #: INSERT with one `?` per row: the value that decides whether the row is due
    insert: str
    due: object
    not_due: tuple[object, ...]
    #: the monitor's due predicate; `?` is "now"
    where: str
    order_by: str


QUEUES = [
    Queue(
        "outbox",
        "main",
        (),
        "INSERT INTO outbox (dedupe_key, chat_id, text, next_attempt_at, status, sent_at)"
        " VALUES (lower(hex(randomblob(8))), 1, 't', ?, 'queued', NULL)",
        PAST,
        (FUTURE,),
        "status IN ('queued', 'failed') AND next_attempt_at <= ?",
        "next_attempt_at, priority",
    ),
    Queue(
        "provider_events",
        "main",
        (),
        "INSERT INTO provider_events (event_key, event_type, object_id, payload, next_attempt_at)"
        " VALUES (lower(hex(randomblob(8))), 'payment.succeeded', 'p', '{}', ?)",
        PAST,
        (FUTURE,),
        "processed_at IS NULL AND next_attempt_at <= ?",
        "next_attempt_at",
    ),
    Queue(
        "payments",
        "main",
        tuple(MEMBER),
        "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor, status,"
        f" next_check_at) VALUES (lower(hex(randomblob(8))), {USER}, {TARIFF}, 'first', 100,"
        " 'pending', ?)",
        PAST,
        (FUTURE,),
        "status IN ('created', 'pending', 'waiting_for_capture') AND next_check_at <= ?",
        "next_check_at",
    ),
    Queue(
        "charge_attempts",
        "main",
        (
            *MEMBER,
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            f" current_period_end) VALUES ({USER}, {TARIFF}, 'active', '2025-02-01T00:00:00Z',"
            " '2025-03-01T00:00:00Z')",
        ),
        "INSERT INTO charge_attempts (subscription_id, period_end, attempt_no, idempotence_key,"
        " amount_minor, status, decline_kind, next_retry_at) VALUES ((SELECT id FROM"
        " subscriptions), '2025-03-01T00:00:00Z', abs(random() % 1000000) + 1,"
        " lower(hex(randomblob(8))), 100, 'declined', 'soft', ?)",
        PAST,
        (FUTURE,),
        "status = 'declined' AND next_retry_at <= ?",
        "next_retry_at",
    ),
    Queue(
        "moderation_actions",
        "main",
        tuple(MEMBER),
        "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, action, reason,"
        f" next_attempt_at) VALUES (lower(hex(randomblob(8))), {USER}, {CHAT}, 'ban', 'grace',"
        " ?)",
        PAST,
        (FUTURE,),
        "status = 'pending' AND next_attempt_at <= ?",
        "next_attempt_at",
    ),
    Queue(
        "audio_files",
        "audio",
        (),
        "INSERT INTO audio_files (file_unique_id, file_id, chat_id, message_id, status)"
        " VALUES (lower(hex(randomblob(8))), 'f', 1, abs(random() % 1000000), ?)",
        "queued",
        ("too_large", "failed"),
        "status IN ('queued', 'downloading') AND next_attempt_at <= ?",
        "next_attempt_at",
    ),
    Queue(
        "chat_messages",
        "useful",
        (),
        "INSERT INTO chat_messages (chat_id, message_id, kind, message_date, raw, parse_status)"
        " VALUES (1, abs(random() % 1000000), 'message', '2025-03-01T00:00:00Z', '{}', ?)",
        "pending",
        ("parsed", "unparsed"),
        "parse_status = 'pending' AND received_at <= ?",
        "received_at",
    ),
]


def portable(sql: str, dialect: str) -> str:
    """The seeds use SQLite's random helpers; PostgreSQL spells them differently."""
    if dialect == "postgres":
        sql = sql.replace("lower(hex(randomblob(8)))", "md5(random()::text)")
        sql = sql.replace("abs(random() % 1000000)", "floor(random() * 1000000)::bigint")
    return sql


@pytest.mark.parametrize("queue", QUEUES, ids=[queue.table for queue in QUEUES])
def test_claim_takes_due_rows_once_until_the_lease_expires(
    migrated_db: Database, queue: Queue
) -> None:
    for statement in queue.setup:
        migrated_db.execute(statement, db=queue.logical_db)
    insert = portable(queue.insert, migrated_db.dialect)
    due_id = migrated_db.fetchval(insert + " RETURNING id", (queue.due,), db=queue.logical_db)
    for value in queue.not_due:
        migrated_db.execute(insert, (value,), db=queue.logical_db)
    now = datetime.now(UTC) + timedelta(seconds=1) if isinstance(queue.due, str) else T0

    def claim(owner: str, at: datetime) -> list[int]:
        rows = migrated_db.claim(
            queue.table,
            db=queue.logical_db,
            where=queue.where,
            params=(at,),
            order_by=queue.order_by,
            owner=owner,
            lease_s=30,
            now=at,
        )
        return [row["id"] for row in rows]

    assert claim("replica-a", now) == [due_id]
    assert claim("replica-b", now) == []
    assert claim("replica-b", now + timedelta(seconds=31)) == [due_id]
    owner = migrated_db.fetchval(
        f"SELECT lease_owner FROM {queue.table} WHERE id = ?", (due_id,), db=queue.logical_db
    )
    assert owner == "replica-b"


# The monitors' hot queries (table, due predicate, order) and the index meant to serve each.
INDEXED_QUERIES = [
    ("main", "outbox", "status IN ('queued', 'failed') AND next_attempt_at <= {t}",
     "next_attempt_at", "outbox_due_idx"),
    ("main", "outbox", "status = 'sending' AND lease_expires_at <= {t}", "lease_expires_at",
     "outbox_sending_lease_idx"),
    ("main", "provider_events", "processed_at IS NULL AND next_attempt_at <= {t}",
     "next_attempt_at", "provider_events_due_idx"),
    ("main", "payments", "status IN ('created', 'pending', 'waiting_for_capture')"
     " AND next_check_at <= {t}", "next_check_at", "payments_open_next_check_idx"),
    ("main", "payments", "status IN ('created', 'pending', 'waiting_for_capture')"
     " AND created_at <= {t}", "created_at", "payments_open_created_idx"),
    ("main", "payments", "processed_at IS NULL AND status IN ('succeeded', 'canceled')",
     "updated_at", "payments_unprocessed_idx"),
    ("main", "payments", "status = 'succeeded' AND processed_at IS NOT NULL"
     " AND confirmed_at IS NULL", "processed_at", "payments_to_confirm_idx"),
    ("main", "subscriptions", "auto_renew AND status IN ('active', 'grace')"
     " AND next_charge_at <= {t}", "next_charge_at", "subscriptions_next_charge_idx"),
    ("main", "subscriptions", "status = 'active' AND current_period_end <= {t}",
     "current_period_end", "subscriptions_active_period_end_idx"),
    ("main", "subscriptions", "status = 'grace' AND grace_until <= {t}", "grace_until",
     "subscriptions_grace_until_idx"),
    ("main", "charge_attempts", "next_retry_at IS NOT NULL AND next_retry_at <= {t}",
     "next_retry_at", "charge_attempts_retry_idx"),
    ("main", "moderation_actions", "status = 'pending' AND next_attempt_at <= {t}",
     "next_attempt_at", "moderation_actions_due_idx"),
    ("main", "surveys", "status IN ('sent', 'in_progress') AND reminded_at IS NULL"
     " AND sent_at <= {t}", "sent_at", "surveys_unreminded_idx"),
    ("audio", "audio_files", "status IN ('queued', 'downloading') AND next_attempt_at <= {t}",
     "next_attempt_at", "audio_files_due_idx"),
    ("useful", "chat_messages", "parse_status = 'pending' AND received_at <= {t}",
     "received_at", "chat_messages_pending_idx"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("logical_db", "table", "where", "order_by", "index"),
    INDEXED_QUERIES,
    ids=[query[4] for query in INDEXED_QUERIES],
)
def test_monitor_query_uses_its_partial_index(
    migrated_pair: Any, logical_db: str, table: str, where: str, order_by: str, index: str
) -> None:
    """The planner can serve the query from its index (PostgreSQL with sequential scans
    discouraged, since the tables are empty; SQLite as is)."""
    sql = f"SELECT id FROM {table} WHERE {where} ORDER BY {order_by} LIMIT 10"
    moment = "'2025-03-01T09:00:00.000000Z'"
    with sqlite3.connect(migrated_pair.sqlite.sqlite_path(logical_db)) as conn:
        plan = " ".join(
            row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql.format(t=moment))
        )
    assert index in plan, plan
    schema = LOGICAL_DATABASES[logical_db].pg_schema
    with psycopg.connect(migrated_pair.postgres_url) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("SET enable_seqscan = off")
        pg_rows = conn.execute("EXPLAIN " + sql.format(t=moment + "::timestamptz")).fetchall()
    plan = " ".join(row[0] for row in pg_rows)
    assert index in plan, plan
