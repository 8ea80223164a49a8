"""The constraints that make work idempotent, on both backends, through the DB layer.

Each duplicate or invalid write must arrive as the right `runtime.errors.IntegrityError` subclass,
and the `ON CONFLICT DO NOTHING` form the producers use must insert nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runtime.db import Database
from runtime.errors import CheckViolation, ForeignKeyViolation, NotNullViolation, UniqueViolation

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def add_user(db: Database, telegram_id: int = 1001) -> int:
    return int(
        db.fetchval("INSERT INTO users (telegram_id) VALUES (?) RETURNING id", (telegram_id,))
    )


def add_tariff(db: Database, code: str = "month") -> int:
    return int(
        db.fetchval(
            "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
            " RETURNING id",
            (code, "Month", 99_000, 30),
        )
    )


def add_subscription(db: Database, user_id: int, tariff_id: int, status: str = "active") -> int:
    return int(
        db.fetchval(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, grace_until) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (user_id, tariff_id, status, T0, T0 + timedelta(days=30), T0 + timedelta(days=33)),
        )
    )


def add_payment(db: Database, user_id: int, tariff_id: int, key: str) -> int:
    return int(
        db.fetchval(
            "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor)"
            " VALUES (?, ?, ?, 'first', 99000) RETURNING id",
            (key, user_id, tariff_id),
        )
    )


def enqueue(db: Database, dedupe_key: str, text: str = "hello") -> int:
    """The producers' form: a duplicate is silently skipped (returns the row count)."""
    return db.execute(
        "INSERT INTO outbox (dedupe_key, chat_id, text) VALUES (?, ?, ?)"
        " ON CONFLICT (dedupe_key) DO NOTHING",
        (dedupe_key, 1001, text),
    )


# --- idempotency --------------------------------------------------------------------------------


def test_duplicate_payment_idempotence_key(migrated_db: Database) -> None:
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    add_payment(migrated_db, user, tariff, "key-1")
    with pytest.raises(UniqueViolation):
        add_payment(migrated_db, user, tariff, "key-1")
    assert migrated_db.fetchval("SELECT count(*) FROM payments") == 1


def test_duplicate_provider_payment_id(migrated_db: Database) -> None:
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    first = add_payment(migrated_db, user, tariff, "key-1")
    second = add_payment(migrated_db, user, tariff, "key-2")
    # Not yet answered by the provider: several NULL provider ids coexist.
    update = "UPDATE payments SET provider_payment_id = ? WHERE id = ?"
    migrated_db.execute(update, ("2f0c-yk", first))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(update, ("2f0c-yk", second))


def test_duplicate_provider_event_is_recorded_once(migrated_db: Database) -> None:
    insert = (
        "INSERT INTO provider_events (event_key, event_type, object_id, payload)"
        " VALUES (?, ?, ?, ?)"
    )
    params = ("payment.succeeded:2f0c", "payment.succeeded", "2f0c", {"event": "x"})
    migrated_db.execute(insert, params)
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, params)
    skipped = migrated_db.execute(insert + " ON CONFLICT (provider, event_key) DO NOTHING", params)
    assert skipped == 0
    row = migrated_db.fetchone("SELECT payload, processed_at, received_at FROM provider_events")
    assert row is not None
    assert row["payload"] == {"event": "x"}
    assert row["processed_at"] is None
    assert row["received_at"].tzinfo is not None


def test_duplicate_outbox_dedupe_key(migrated_db: Database) -> None:
    assert enqueue(migrated_db, "receipt:1") == 1
    assert enqueue(migrated_db, "receipt:1", text="again") == 0
    with pytest.raises(UniqueViolation):
        migrated_db.execute(
            "INSERT INTO outbox (dedupe_key, chat_id, text) VALUES ('receipt:1', 1, 'x')"
        )
    row = migrated_db.fetchone(
        "SELECT text, status, attempts, disable_web_page_preview FROM outbox"
    )
    assert row == {
        "text": "hello",
        "status": "queued",
        "attempts": 0,
        "disable_web_page_preview": False,
    }


def test_second_survey_for_the_same_user_and_month(migrated_db: Database) -> None:
    user = add_user(migrated_db)
    insert = "INSERT INTO surveys (user_id, month) VALUES (?, ?)"
    migrated_db.execute(insert, (user, "2025-03"))
    migrated_db.execute(insert, (user, "2025-04"))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, (user, "2025-03"))


def test_second_reminder_of_the_same_kind_for_the_same_period(migrated_db: Database) -> None:
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    subscription = add_subscription(migrated_db, user, tariff)
    insert = (
        "INSERT INTO subscription_reminders (subscription_id, period_end, kind) VALUES (?, ?, ?)"
    )
    period_end = T0 + timedelta(days=30)
    migrated_db.execute(insert, (subscription, period_end, "T-7"))
    migrated_db.execute(insert, (subscription, period_end, "T-3"))
    migrated_db.execute(insert, (subscription, period_end + timedelta(days=30), "T-7"))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, (subscription, period_end, "T-7"))


def test_second_event_reminder_of_the_same_kind(migrated_db: Database) -> None:
    user = add_user(migrated_db)
    event = migrated_db.fetchval(
        "INSERT INTO events (title, starts_at) VALUES ('Meetup', ?) RETURNING id", (T0,)
    )
    migrated_db.execute(
        "INSERT INTO event_registrations (event_id, user_id) VALUES (?, ?)", (event, user)
    )
    insert = "INSERT INTO event_notifications (event_id, user_id, kind) VALUES (?, ?, ?)"
    migrated_db.execute(insert, (event, user, "24h"))
    migrated_db.execute(insert, (event, user, "1h"))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, (event, user, "24h"))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(
            "INSERT INTO event_registrations (event_id, user_id) VALUES (?, ?)", (event, user)
        )


def test_one_live_subscription_per_member(migrated_db: Database) -> None:
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    add_subscription(migrated_db, user, tariff, status="expired")
    add_subscription(migrated_db, user, tariff, status="active")
    with pytest.raises(UniqueViolation):
        add_subscription(migrated_db, user, tariff, status="grace")


def test_a_period_is_never_charged_twice(migrated_db: Database) -> None:
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    subscription = add_subscription(migrated_db, user, tariff)
    period_end = T0 + timedelta(days=30)
    insert = (
        "INSERT INTO charge_attempts (subscription_id, period_end, attempt_no, idempotence_key,"
        " amount_minor, status, decline_kind) VALUES (?, ?, ?, ?, 99000, ?, ?)"
    )
    migrated_db.execute(insert, (subscription, period_end, 1, "k1", "declined", "soft"))
    migrated_db.execute(insert, (subscription, period_end, 2, "k2", "pending", None))
    # While attempt 2 is open (or once it succeeded) no other attempt for the period may exist.
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, (subscription, period_end, 3, "k3", "created", None))
    # The same key twice is refused too.
    with pytest.raises(UniqueViolation):
        migrated_db.execute(
            insert, (subscription, period_end + timedelta(days=30), 1, "k2", "created", None)
        )
    migrated_db.execute("UPDATE charge_attempts SET status = 'succeeded' WHERE attempt_no = 2")
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, (subscription, period_end, 3, "k3", "created", None))
    # The next period is a different period.
    migrated_db.execute(
        insert, (subscription, period_end + timedelta(days=30), 1, "k4", "created", None)
    )


def test_payment_applied_once_guard(migrated_db: Database) -> None:
    """The documented compare-and-set: only the first update that applies the payment wins."""
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    payment = add_payment(migrated_db, user, tariff, "key-1")
    migrated_db.execute(
        "UPDATE payments SET status = 'succeeded', paid_at = ? WHERE id = ?", (T0, payment)
    )
    apply = "UPDATE payments SET processed_at = ? WHERE id = ? AND processed_at IS NULL"
    assert migrated_db.execute(apply, (T0, payment)) == 1
    assert migrated_db.execute(apply, (T0, payment)) == 0


def test_other_dedupe_keys(migrated_db: Database) -> None:
    user = add_user(migrated_db)
    chat = migrated_db.fetchval(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (-100123, 'supergroup', ?)"
        " RETURNING id",
        (True,),
    )
    ban = (
        "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, action, reason)"
        " VALUES (?, ?, ?, 'ban', 'grace ended')"
    )
    migrated_db.execute(ban, ("ban:1:2025-03-31:-100123", user, chat))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(ban, ("ban:1:2025-03-31:-100123", user, chat))
    membership = "INSERT INTO memberships (user_id, chat_id, status) VALUES (?, ?, 'member')"
    migrated_db.execute(membership, (user, chat))
    with pytest.raises(UniqueViolation):
        migrated_db.execute(membership, (user, chat))
    audio = (
        "INSERT INTO audio_files (file_unique_id, file_id, chat_id, message_id) VALUES (?,?,?,?)"
    )
    migrated_db.execute(audio, ("AgADu", "file-1", -100, 7), db="audio")
    with pytest.raises(UniqueViolation):
        migrated_db.execute(audio, ("AgADu", "file-2", -100, 8), db="audio")
    inbox = (
        "INSERT INTO chat_messages (chat_id, message_id, kind, message_date, raw)"
        " VALUES (?, ?, 'channel_post', ?, ?)"
    )
    migrated_db.execute(inbox, (-100, 7, T0, {"message_id": 7}), db="useful")
    with pytest.raises(UniqueViolation):
        migrated_db.execute(inbox, (-100, 7, T0, {"message_id": 7}), db="useful")


@pytest.mark.parametrize("prefix", ["nmarket", "tradeagent"])
def test_listing_price_history_is_idempotent(migrated_db: Database, prefix: str) -> None:
    complex_id = migrated_db.fetchval(
        f"INSERT INTO {prefix}_complexes (name, normalized_name, first_seen_at, last_seen_at)"
        " VALUES ('ЖК Север', 'север', ?, ?) RETURNING id",
        (T0, T0),
        db=prefix,
    )
    flat = f"INSERT INTO {prefix}_flats (complex_id, external_key, rooms, area_dm2, price_minor,"
    flat += " first_seen_at, last_seen_at) VALUES (?, '1|3800|5', 1, 3800, 650000000, ?, ?)"
    flat_id = migrated_db.fetchval(flat + " RETURNING id", (complex_id, T0, T0), db=prefix)
    with pytest.raises(UniqueViolation):
        migrated_db.execute(flat, (complex_id, T0, T0), db=prefix)
    snapshot = (
        f"INSERT INTO {prefix}_price_snapshots (flat_id, price_minor, seen_at) VALUES (?,?,?)"
    )
    migrated_db.execute(snapshot, (flat_id, 650_000_000, T0), db=prefix)
    with pytest.raises(UniqueViolation):
        migrated_db.execute(snapshot, (flat_id, 640_000_000, T0), db=prefix)
    post = f"INSERT INTO {prefix}_posts (chat_id, message_id, message_date, status, error)"
    post += " VALUES (-100, 9, ?, ?, ?)"
    with pytest.raises(CheckViolation):
        migrated_db.execute(post, (T0, "unparsed", None), db=prefix)
    migrated_db.execute(post, (T0, "unparsed", "no_price"), db=prefix)
    with pytest.raises(UniqueViolation):
        migrated_db.execute(post, (T0, "parsed", None), db=prefix)


@pytest.mark.parametrize("logical_db", ["advert", "contract"])
def test_token_hash_unique_and_uses_capped(migrated_db: Database, logical_db: str) -> None:
    insert = "INSERT INTO tokens (token_hash, issued_to, scope, max_uses) VALUES (?, ?, ?, ?)"
    token_hash = "ab" * 32
    token = migrated_db.fetchval(
        insert + " RETURNING id", (token_hash, "partner", "publish", 1), db=logical_db
    )
    with pytest.raises(UniqueViolation):
        migrated_db.execute(insert, (token_hash, "other", "publish", None), db=logical_db)
    use = "UPDATE tokens SET use_count = use_count + 1 WHERE id = ?"
    migrated_db.execute(use, (token,), db=logical_db)
    with pytest.raises(CheckViolation):
        migrated_db.execute(use, (token,), db=logical_db)
    migrated_db.execute(
        "INSERT INTO token_uses (token_id, ip) VALUES (?, '10.0.0.1')", (token,), db=logical_db
    )
    migrated_db.execute("DELETE FROM tokens WHERE id = ?", (token,), db=logical_db)
    assert migrated_db.fetchval("SELECT count(*) FROM token_uses", db=logical_db) == 0


# --- enums, nulls, references -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("logical_db", "sql", "params"),
    [
        (
            "main",
            "INSERT INTO outbox (dedupe_key, chat_id, text, status) VALUES (?,?,?,?)",
            ("k", 1, "t", "lost"),
        ),
        (
            "main",
            "INSERT INTO outbox (dedupe_key, chat_id, text, parse_mode) VALUES (?,?,?,?)",
            ("k", 1, "t", "markdown"),
        ),
        ("main", "INSERT INTO users (telegram_id, role) VALUES (?, ?)", (5, "owner")),
        ("main", "INSERT INTO chats (telegram_chat_id, kind) VALUES (?, ?)", (5, "forum")),
        (
            "main",
            "INSERT INTO tariffs (code, title, price_minor, period_days, currency)"
            " VALUES (?, ?, ?, ?, ?)",
            ("m", "M", 100, 30, "rub"),
        ),
        (
            "main",
            "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?,?,?,?)",
            ("m", "M", 0, 30),
        ),
        (
            "main",
            "INSERT INTO provider_events (event_key, event_type, object_id, payload,"
            " processed_at) VALUES (?, ?, ?, ?, ?)",
            ("k", "t", "o", {}, T0),
        ),
        (
            "audio",
            "INSERT INTO audio_files (file_unique_id, file_id, chat_id, message_id, status)"
            " VALUES (?, ?, ?, ?, ?)",
            ("u", "f", 1, 1, "lost"),
        ),
        (
            "useful",
            "INSERT INTO chat_messages (chat_id, message_id, kind, message_date, raw)"
            " VALUES (?, ?, ?, ?, ?)",
            (1, 1, "sticker", T0, {}),
        ),
        (
            "nmarket",
            "INSERT INTO nmarket_posts (chat_id, message_id, message_date, status)"
            " VALUES (?, ?, ?, ?)",
            (1, 1, T0, "maybe"),
        ),
    ],
)
def test_bad_enum_or_value_is_a_check_violation(
    migrated_db: Database, logical_db: str, sql: str, params: tuple[object, ...]
) -> None:
    with pytest.raises(CheckViolation):
        migrated_db.execute(sql, params, db=logical_db)


@pytest.mark.parametrize("month", ["2025-13", "2025-00", "25-03", "2025/03", "2025-3", "1999-12"])
def test_survey_month_format(migrated_db: Database, month: str) -> None:
    user = add_user(migrated_db)
    with pytest.raises(CheckViolation):
        migrated_db.execute("INSERT INTO surveys (user_id, month) VALUES (?, ?)", (user, month))


def test_reminder_and_state_checks(migrated_db: Database) -> None:
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    subscription = add_subscription(migrated_db, user, tariff)
    with pytest.raises(CheckViolation):
        migrated_db.execute(
            "INSERT INTO subscription_reminders (subscription_id, period_end, kind)"
            " VALUES (?, ?, 'soon')",
            (subscription, T0),
        )
    with pytest.raises(CheckViolation):
        migrated_db.execute(
            "UPDATE subscriptions SET current_period_end = current_period_start WHERE id = ?",
            (subscription,),
        )
    payment = add_payment(migrated_db, user, tariff, "k")
    with pytest.raises(CheckViolation):  # succeeded needs paid_at
        migrated_db.execute("UPDATE payments SET status = 'succeeded' WHERE id = ?", (payment,))
    with pytest.raises(CheckViolation):  # an open payment cannot be processed
        migrated_db.execute("UPDATE payments SET processed_at = ? WHERE id = ?", (T0, payment))
    with pytest.raises(CheckViolation):  # a renewal belongs to a subscription
        migrated_db.execute(
            "INSERT INTO payments (idempotence_key, user_id, tariff_id, kind, amount_minor)"
            " VALUES ('r', ?, ?, 'renewal', 100)",
            (user, tariff),
        )
    chat = migrated_db.fetchval(
        "INSERT INTO chats (telegram_chat_id, kind) VALUES (-1, 'supergroup') RETURNING id"
    )
    with pytest.raises(CheckViolation):  # Telegram refuses member_limit on join-request links
        migrated_db.execute(
            "INSERT INTO invite_links (chat_id, link, creates_join_request, member_limit)"
            " VALUES (?, 'https://t.me/+x', ?, 1)",
            (chat, True),
        )


def test_not_null_violation(migrated_db: Database) -> None:
    with pytest.raises(NotNullViolation):
        migrated_db.execute("INSERT INTO outbox (dedupe_key, chat_id) VALUES ('k', 1)")


def test_foreign_keys_and_on_delete(migrated_db: Database) -> None:
    with pytest.raises(ForeignKeyViolation):
        add_payment(migrated_db, 424242, 424242, "orphan")
    user, tariff = add_user(migrated_db), add_tariff(migrated_db)
    other = add_user(migrated_db, telegram_id=2002)
    chat = migrated_db.fetchval(
        "INSERT INTO chats (telegram_chat_id, kind) VALUES (-1, 'supergroup') RETURNING id"
    )
    for member in (user, other):
        migrated_db.execute(
            "INSERT INTO memberships (user_id, chat_id, status) VALUES (?, ?, 'member')",
            (member, chat),
        )
    add_payment(migrated_db, user, tariff, "k")
    # Money history keeps its member: RESTRICT.
    with pytest.raises(ForeignKeyViolation):
        migrated_db.execute("DELETE FROM users WHERE id = ?", (user,))
    # Per-member state goes with the member: CASCADE.
    migrated_db.execute("DELETE FROM users WHERE id = ?", (other,))
    assert migrated_db.fetchval("SELECT count(*) FROM memberships") == 1


def test_defaults_round_trip_with_the_same_types(migrated_db: Database) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    user = add_user(migrated_db)
    row = migrated_db.fetchone("SELECT * FROM users WHERE id = ?", (user,))
    assert row is not None
    assert row["is_reachable"] is True
    assert row["role"] == "member"
    assert isinstance(row["created_at"], datetime)
    assert before <= row["created_at"] <= datetime.now(UTC) + timedelta(seconds=5)
