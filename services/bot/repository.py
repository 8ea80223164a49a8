"""The bot's SQL, one function per question it asks the database.

Everything is written once with `?` placeholders for both backends (runtime.db). Writes that
Telegram may deliver twice (a redelivered update) are idempotent by a unique key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram.types import Chat, User

from payments.entitlement import entitled_user, entitling
from payments.renewals import AutoRenewalInProgress, refuse_while_auto_charging
from payments.store import STOPPED_BY_MEMBER
from runtime.db import AsyncDatabase, Row


@dataclass(frozen=True)
class Member:
    id: int
    telegram_id: int
    created: bool


# --- members ---------------------------------------------------------------------------------


async def register_user(db: AsyncDatabase, user: User, now: datetime) -> Member:
    """Insert the member or refresh the profile; a returning member becomes reachable again."""
    async with db.transaction() as tx:
        user_id = await tx.fetchval(
            "INSERT INTO users (telegram_id, username, first_name, last_name, language_code)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (telegram_id) DO NOTHING RETURNING id",
            (user.id, user.username, user.first_name, user.last_name, user.language_code),
        )
        if user_id is not None:
            return Member(id=int(user_id), telegram_id=user.id, created=True)
        row = await tx.fetchone(
            "UPDATE users SET username = ?, first_name = ?, last_name = ?, language_code = ?,"
            " is_reachable = TRUE, blocked_at = NULL, updated_at = ?"
            " WHERE telegram_id = ? RETURNING id",
            (user.username, user.first_name, user.last_name, user.language_code, now, user.id),
        )
    assert row is not None, "the conflicting row exists"
    return Member(id=int(row["id"]), telegram_id=user.id, created=False)


async def find_user(db: AsyncDatabase, telegram_id: int) -> Row | None:
    return await db.fetchone("SELECT * FROM users WHERE telegram_id = ?", (telegram_id,))


async def live_subscription(db: AsyncDatabase, user_id: int, now: datetime) -> Row | None:
    """The member's subscription that entitles them now (payments.entitlement): active, or in
    a grace that has not run out."""
    return await db.fetchone(
        "SELECT s.*, t.title AS tariff_title, t.code AS tariff_code FROM subscriptions s"
        " JOIN tariffs t ON t.id = s.tariff_id"
        f" WHERE s.user_id = ? AND {entitling('s')}",
        (user_id, now),
    )


async def entitled(db: AsyncDatabase, user: Row | None, now: datetime) -> bool:
    """Staff, or a member whose subscription entitles them now: who may be in the paid chats
    (the rule ban_monitor removes by, payments.entitlement)."""
    if user is None:
        return False
    found = await db.fetchval(
        f"SELECT 1 FROM users u WHERE u.id = ? AND {entitled_user('u')}", (user["id"], now)
    )
    return found is not None


async def latest_subscription(db: AsyncDatabase, user_id: int) -> Row | None:
    return await db.fetchone(
        "SELECT s.*, t.title AS tariff_title, t.code AS tariff_code FROM subscriptions s"
        " JOIN tariffs t ON t.id = s.tariff_id WHERE s.user_id = ?"
        " ORDER BY s.current_period_end DESC, s.id DESC LIMIT 1",
        (user_id,),
    )


@dataclass(frozen=True)
class AutoRenewStop:
    #: Auto-renewal was on and is off now.
    stopped: bool
    #: A charge of the saved card started before is still open (charge_attempts created or
    #: pending): it may yet go through, and then its period is added.
    charge_in_flight: bool


async def stop_auto_renew(db: AsyncDatabase, user_id: int, now: datetime) -> AutoRenewStop:
    """Switch auto-renewal off on the live subscription, as the member's own stop."""
    async with db.transaction() as tx:
        live_id = await tx.fetchval(
            "SELECT id FROM subscriptions WHERE user_id = ? AND status IN ('active', 'grace')",
            (user_id,),
        )
        if live_id is None:
            return AutoRenewStop(stopped=False, charge_in_flight=False)
        try:
            # Under the subscription's row lock, as recurrent_payments plans its charges.
            await refuse_while_auto_charging(tx, live_id)
            in_flight = False
        except AutoRenewalInProgress:
            in_flight = True
        stopped = await tx.execute(
            "UPDATE subscriptions SET auto_renew = FALSE, next_charge_at = NULL,"
            " auto_renew_stopped_reason = ?, updated_at = ? WHERE id = ? AND auto_renew",
            (STOPPED_BY_MEMBER, now, live_id),
        )
    return AutoRenewStop(stopped=bool(stopped), charge_in_flight=in_flight)


class AutoRenewResume(enum.StrEnum):
    """What /autorenew_on did."""

    #: Switched on: the live subscription's saved card is charged every period.
    RESUMED = "resumed"
    ALREADY_ON = "already_on"
    #: No usable saved card: the member's stop is lifted, so the next /subscribe saves one.
    NEXT_PAYMENT = "next_payment"
    NO_SUBSCRIPTION = "no_subscription"


@dataclass(frozen=True)
class Resumed:
    outcome: AutoRenewResume
    #: The live subscription with its tariff (price_minor, currency, period_days) and card
    #: (card_last4, card_title), when there is one.
    subscription: Row | None = None


async def resume_auto_renew(db: AsyncDatabase, user_id: int, now: datetime) -> Resumed:
    """The member's explicit "turn auto-renewal back on" (the only way a stop of theirs ends).

    Switched on when the live subscription (payments.entitlement) has a saved card that is not
    revoked; otherwise the member's stop is lifted and the next payment (/subscribe, which then
    says so) saves a card.
    next_charge_at stays empty here: recurrent_payments charges by the period's end, and the
    bot does not know RENEW_CHARGE_AHEAD_H (payments.store.charge_due_at); the next applied
    period sets it.
    """
    async with db.transaction() as tx:
        live = await tx.fetchone(
            "SELECT s.*, t.price_minor, t.currency, t.period_days, pm.card_last4,"
            " pm.title AS card_title, (pm.id IS NOT NULL) AS has_card"
            " FROM subscriptions s JOIN tariffs t ON t.id = s.tariff_id"
            " LEFT JOIN payment_methods pm ON pm.id = s.payment_method_id AND pm.is_saved"
            " AND pm.revoked_at IS NULL"
            # A grace that ran out is over, marked expired or not: nothing would be charged.
            f" WHERE s.user_id = ? AND {entitling('s')}",
            (user_id, now),
        )
        if live is None:
            await tx.execute(
                "UPDATE subscriptions SET auto_renew_stopped_reason = NULL, updated_at = ?"
                " WHERE user_id = ? AND auto_renew_stopped_reason = ?",
                (now, user_id, STOPPED_BY_MEMBER),
            )
            any_sub = await tx.fetchval(
                "SELECT 1 FROM subscriptions WHERE user_id = ? LIMIT 1", (user_id,)
            )
            return Resumed(
                AutoRenewResume.NEXT_PAYMENT if any_sub else AutoRenewResume.NO_SUBSCRIPTION
            )
        if live["auto_renew"]:
            return Resumed(AutoRenewResume.ALREADY_ON, live)
        if not live["has_card"]:
            await tx.execute(
                "UPDATE subscriptions SET auto_renew_stopped_reason = NULL, updated_at = ?"
                " WHERE id = ?",
                (now, live["id"]),
            )
            return Resumed(AutoRenewResume.NEXT_PAYMENT, live)
        await tx.execute(
            "UPDATE subscriptions SET auto_renew = TRUE, auto_renew_stopped_reason = NULL,"
            " updated_at = ? WHERE id = ? AND NOT auto_renew",
            (now, live["id"]),
        )
    return Resumed(AutoRenewResume.RESUMED, live)


async def active_tariffs(db: AsyncDatabase) -> list[Row]:
    return await db.fetchall(
        "SELECT * FROM tariffs WHERE is_active ORDER BY price_minor, id",
    )


async def tariff_by_id(db: AsyncDatabase, tariff_id: int) -> Row | None:
    return await db.fetchone("SELECT * FROM tariffs WHERE id = ? AND is_active", (tariff_id,))


# --- events ----------------------------------------------------------------------------------


def _seats_taken(event_id: str) -> str:
    """SQL: the seats of event `event_id` (an SQL expression) taken now. Binds one: now.

    A registrant takes a seat while entitled (payments.entitlement): a lapsed member's
    registration stays, and takes its seat again when they pay, but meanwhile the seat is free
    for those who paid (so a full event may then hold more than its capacity).
    """
    return (
        "SELECT count(*) FROM event_registrations r JOIN users ru ON ru.id = r.user_id"
        f" WHERE r.event_id = {event_id} AND r.status = 'registered' AND {entitled_user('ru')}"
    )


async def upcoming_events(
    db: AsyncDatabase, user_id: int, now: datetime, limit: int = 10
) -> list[Row]:
    return await db.fetchall(
        "SELECT e.id, e.title, e.description, e.location, e.url, e.starts_at, e.capacity,"
        f" ({_seats_taken('e.id')}) AS registered_count,"
        " (SELECT r.status FROM event_registrations r"
        "   WHERE r.event_id = e.id AND r.user_id = ?) AS my_status"
        " FROM events e WHERE e.status = 'published' AND e.starts_at > ?"
        " ORDER BY e.starts_at, e.id LIMIT ?",
        (now, user_id, now, limit),
    )


class RegistrationOutcome:
    REGISTERED = "registered"
    ALREADY = "already"
    FULL = "full"
    CLOSED = "closed"
    CANCELED = "canceled"
    NOT_REGISTERED = "not_registered"
    #: A cancellation once the event has started (or was taken off).
    TOO_LATE = "too_late"


async def register_for_event(
    db: AsyncDatabase, event_id: int, user_id: int, now: datetime
) -> tuple[str, Row | None]:
    async with db.transaction() as tx:
        # Touching the event row first serialises registrations for it on both backends, so
        # two members cannot both take the last seat.
        touched = await tx.execute(
            "UPDATE events SET updated_at = updated_at"
            " WHERE id = ? AND status = 'published' AND starts_at > ?",
            (event_id, now),
        )
        event = await tx.fetchone("SELECT * FROM events WHERE id = ?", (event_id,))
        if not touched:
            return RegistrationOutcome.CLOSED, event
        mine = await tx.fetchval(
            "SELECT status FROM event_registrations WHERE event_id = ? AND user_id = ?",
            (event_id, user_id),
        )
        if mine == "registered":
            return RegistrationOutcome.ALREADY, event
        assert event is not None
        if event["capacity"] is not None:
            taken = await tx.fetchval(_seats_taken("?"), (event_id, now))
            if int(taken) >= int(event["capacity"]):
                return RegistrationOutcome.FULL, event
        await tx.execute(
            "INSERT INTO event_registrations (event_id, user_id, status, registered_at)"
            " VALUES (?, ?, 'registered', ?) ON CONFLICT (event_id, user_id) DO UPDATE"
            " SET status = 'registered', registered_at = excluded.registered_at,"
            " canceled_at = NULL",
            (event_id, user_id, now),
        )
    return RegistrationOutcome.REGISTERED, event


async def cancel_event_registration(
    db: AsyncDatabase, event_id: int, user_id: int, now: datetime
) -> str:
    """Cancel the member's seat while the event is published and has not started: afterwards
    the registration is the record of who came (or was expected)."""
    changed = await db.execute(
        "UPDATE event_registrations SET status = 'canceled', canceled_at = ?"
        " WHERE event_id = ? AND user_id = ? AND status = 'registered'"
        " AND EXISTS (SELECT 1 FROM events e WHERE e.id = event_registrations.event_id"
        "   AND e.status = 'published' AND e.starts_at > ?)",
        (now, event_id, user_id, now),
    )
    if changed:
        return RegistrationOutcome.CANCELED
    still_open = await db.fetchval(
        "SELECT 1 FROM events WHERE id = ? AND status = 'published' AND starts_at > ?",
        (event_id, now),
    )
    return RegistrationOutcome.NOT_REGISTERED if still_open else RegistrationOutcome.TOO_LATE


# --- chats and memberships -------------------------------------------------------------------


async def upsert_chat(db: AsyncDatabase, chat: Chat, now: datetime) -> tuple[int, bool]:
    """Record a chat the bot sees: (row id, whether it is a paid chat).

    Never marks a chat paid: anyone can add the bot to their group, so being seen proves
    nothing. Paid chats come from PAID_CHAT_IDS (`mark_paid_chats`) or the admin.
    """
    row = await db.fetchone(
        "INSERT INTO chats (telegram_chat_id, title, username, kind)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (telegram_chat_id) DO UPDATE"
        " SET title = excluded.title, username = excluded.username, kind = excluded.kind,"
        " updated_at = ? RETURNING id, is_managed",
        (chat.id, chat.title, chat.username, chat.type, now),
    )
    assert row is not None
    return int(row["id"]), bool(row["is_managed"])


async def mark_paid_chats(db: AsyncDatabase, chat_ids: frozenset[int], now: datetime) -> None:
    """The configured paid chats, managed from now on (a row made for one not seen yet)."""
    async with db.transaction() as tx:
        for chat_id in sorted(chat_ids):
            await tx.execute(
                "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', ?)"
                " ON CONFLICT (telegram_chat_id) DO UPDATE SET is_managed = excluded.is_managed,"
                " updated_at = ?",
                (chat_id, True, now),
            )


async def set_membership(
    db: AsyncDatabase, user_id: int, chat_row_id: int, status: str, now: datetime
) -> None:
    """Upsert a member's state in a chat, stamping the time column that goes with it."""
    stamp = {"member": "joined_at", "left": "left_at", "banned": "banned_at"}.get(status)
    columns = f", {stamp}" if stamp else ""
    values = ", ?" if stamp else ""
    update = f", {stamp} = excluded.{stamp}" if stamp else ""
    params: tuple[Any, ...] = (user_id, chat_row_id, status, now)
    await db.execute(
        f"INSERT INTO memberships (user_id, chat_id, status, updated_at{columns})"
        f" VALUES (?, ?, ?, ?{values}) ON CONFLICT (user_id, chat_id) DO UPDATE"
        f" SET status = excluded.status, updated_at = excluded.updated_at{update}",
        params + ((now,) if stamp else ()),
    )


async def remove_later(
    db: AsyncDatabase, entrant: User, chat_row_id: int, reason: str, entered_at: datetime
) -> None:
    """An entrant of a paid chat the bot could not remove (or check) at once: known as a user,
    recorded in the chat, with a pending ban that ban_monitor carries out and retries
    (monitors/moderation.py; `reason` from monitors/decisions/entrants.py)."""
    async with db.transaction() as tx:
        user_id = await tx.fetchval(
            "INSERT INTO users (telegram_id, username, first_name, last_name, language_code)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (telegram_id) DO UPDATE"
            " SET updated_at = users.updated_at RETURNING id",
            (
                entrant.id,
                entrant.username,
                entrant.first_name,
                entrant.last_name,
                entrant.language_code,
            ),
        )
        await tx.execute(
            "INSERT INTO memberships (user_id, chat_id, status, joined_at, updated_at)"
            " VALUES (?, ?, 'member', ?, ?) ON CONFLICT (user_id, chat_id) DO UPDATE"
            " SET status = 'member', joined_at = excluded.joined_at,"
            " updated_at = excluded.updated_at",
            (user_id, chat_row_id, entered_at, entered_at),
        )
        # One per entry: a redelivered update finds its row.
        await tx.execute(
            "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, action, reason)"
            " VALUES (?, ?, ?, 'ban', ?) ON CONFLICT (idempotence_key) DO NOTHING",
            (
                f"entrant:{user_id}:{chat_row_id}:{int(entered_at.timestamp())}",
                user_id,
                chat_row_id,
                reason,
            ),
        )


async def set_reachable(db: AsyncDatabase, telegram_id: int, reachable: bool, now: datetime) -> int:
    """The member's private chat with the bot: open (unblocked) or closed (blocked). The relay
    and the monitors write only to reachable members; 0 when the user is not registered."""
    return await db.execute(
        "UPDATE users SET is_reachable = ?, blocked_at = ?, updated_at = ? WHERE telegram_id = ?"
        " AND is_reachable <> ?",
        (reachable, None if reachable else now, now, telegram_id, reachable),
    )


# --- the inbox for parse_messages ------------------------------------------------------------


async def save_chat_message(
    db: AsyncDatabase,
    *,
    chat: Chat,
    message_id: int,
    from_user: User | None,
    kind: str,
    text: str | None,
    message_date: datetime,
    edited_at: datetime | None,
    raw: dict[str, Any],
) -> None:
    """Insert into the inbox; an edit updates the row and queues it for parsing again."""
    await db.execute(
        "INSERT INTO chat_messages (chat_id, message_id, chat_title, chat_username,"
        " from_user_id, from_username, kind, text, message_date, edited_at, raw)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (chat_id, message_id) DO UPDATE SET text = excluded.text,"
        " edited_at = excluded.edited_at, raw = excluded.raw, parse_status = 'pending',"
        " parse_error = NULL, lease_owner = NULL, lease_expires_at = NULL"
        " WHERE excluded.edited_at IS NOT NULL",
        (
            chat.id,
            message_id,
            chat.title,
            chat.username,
            from_user.id if from_user else None,
            from_user.username if from_user else None,
            kind,
            text,
            message_date,
            edited_at,
            raw,
        ),
        db="useful",
    )
