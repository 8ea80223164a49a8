"""main/0008: bans and unbans refused for want of the bot's rights before e46d682, recorded
`failed` for good, go back to the retry state e46d682 gives such a refusal (pending, due, the
attempts and Telegram's refusal kept), when the member still needs them; nothing else moves."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runtime.db.migrations import upgrade

SCHEMA = Path(__file__).resolve().parents[3] / "runtime" / "schema" / "main"
#: Telegram's refusals, as moderation stored them in last_error.
NO_RIGHTS = "Bad Request: not enough rights to restrict/ban chat member"
KICKED = "Forbidden: bot was kicked from the supergroup chat"
NOT_ADMIN = "Bad Request: CHAT_ADMIN_REQUIRED"
AN_ADMIN = "Bad Request: user is an administrator of the chat"
NOW = datetime.now(UTC)
LONG_AGO = NOW - timedelta(days=90)


class Community:
    """Members, chats, subscriptions and their moderation actions, written with plain SQL on
    the schema before the migration."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.telegram_ids = iter(range(1001, 2000))
        self.keys = iter(range(1, 1000))

    async def chat(self, *, paid: bool = True) -> int:
        chat: int = await self.db.fetchval(
            "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', ?)"
            " RETURNING id",
            (-next(self.telegram_ids), paid),
        )
        return chat

    async def member(
        self, chat: int, membership: str, *, subscription: str = "expired", role: str = "member"
    ) -> int:
        """`subscription`: expired, active, grace_over or grace_left."""
        user: int = await self.db.fetchval(
            "INSERT INTO users (telegram_id, role) VALUES (?, ?) RETURNING id",
            (next(self.telegram_ids), role),
        )
        status, grace_until = {
            "expired": ("expired", None),
            "active": ("active", None),
            "grace_over": ("grace", NOW - timedelta(hours=1)),
            "grace_left": ("grace", NOW + timedelta(days=1)),
        }[subscription]
        end = NOW + timedelta(days=20) if status == "active" else NOW - timedelta(days=5)
        await self.db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, grace_until) VALUES (?, (SELECT id FROM tariffs), ?, ?, ?, ?)",
            (user, status, end - timedelta(days=30), end, grace_until),
        )
        await self.db.execute(
            "INSERT INTO memberships (user_id, chat_id, status, banned_at) VALUES (?, ?, ?, ?)",
            (user, chat, membership, LONG_AGO if membership == "banned" else None),
        )
        return user

    async def action(
        self, user: int, chat: int, action: str, status: str, error: str | None
    ) -> int:
        action_id: int = await self.db.fetchval(
            "INSERT INTO moderation_actions (idempotence_key, user_id, chat_id, action, reason,"
            " status, attempts, next_attempt_at, last_error, requested_at, done_at)"
            " VALUES (?, ?, ?, ?, 'subscription_ended', ?, 1, ?, ?, ?, ?) RETURNING id",
            (
                f"{action}:{next(self.keys)}",
                user,
                chat,
                action,
                status,
                LONG_AGO,
                error,
                LONG_AGO,
                LONG_AGO if status == "done" else None,
            ),
        )
        return action_id


async def test_rights_refusals_still_needed_are_pending_again_and_nothing_else(
    async_db: Any, tmp_path: Path
) -> None:
    root = tmp_path / "schema" / "main"
    root.mkdir(parents=True)
    before = [path for path in sorted(SCHEMA.glob("*.sql")) if path.name < "0008"]
    for path in before:
        shutil.copy(path, root)
    await upgrade(async_db, ["main"], schema_root=root.parent)
    await async_db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES ('m', 'M', 100, 30)"
    )
    c = Community(async_db)
    paid, unpaid = await c.chat(), await c.chat(paid=False)

    async def failed_ban(error: str, membership: str = "member", **member: Any) -> int:
        return await c.action(
            await c.member(paid, membership, **member), paid, "ban", "failed", error
        )

    back = {
        "refused": await failed_ban(NO_RIGHTS),
        "kicked": await failed_ban(KICKED),
        "not_admin": await failed_ban(NOT_ADMIN),
        "grace_over": await failed_ban(NO_RIGHTS, subscription="grace_over"),
        "requested": await failed_ban(NO_RIGHTS, "requested"),
    }
    stays = {
        "not_rights": await failed_ban(AN_ADMIN),
        "superseded": await failed_ban("superseded: the member is entitled"),
        "paid_since": await failed_ban(NO_RIGHTS, subscription="active"),
        "in_grace": await failed_ban(NO_RIGHTS, subscription="grace_left"),
        "staff": await failed_ban(NO_RIGHTS, role="staff"),
        "left_since": await failed_ban(NO_RIGHTS, "left"),
        "banned_since": await failed_ban(NO_RIGHTS, "banned"),
        "unpaid_chat": await c.action(
            await c.member(unpaid, "member"), unpaid, "ban", "failed", NO_RIGHTS
        ),
        "done": await c.action(await c.member(paid, "banned"), paid, "ban", "done", None),
    }
    twice = await c.member(paid, "member")
    stays["older"] = await c.action(twice, paid, "ban", "failed", NO_RIGHTS)
    back["newer"] = await c.action(twice, paid, "ban", "failed", KICKED)
    payer = await c.member(paid, "banned", subscription="active")
    back["unban"] = await c.action(payer, paid, "unban", "failed", NO_RIGHTS)
    lapsed = await c.member(paid, "banned")
    stays["unban_lapsed"] = await c.action(lapsed, paid, "unban", "failed", NO_RIGHTS)
    rejoined = await c.member(paid, "member", subscription="active")
    stays["unban_rejoined"] = await c.action(rejoined, paid, "unban", "failed", NO_RIGHTS)
    rows_before = {
        row["id"]: dict(row) for row in await async_db.fetchall("SELECT * FROM moderation_actions")
    }

    for path in sorted(SCHEMA.glob("*.sql")):
        if path not in before:
            shutil.copy(path, root)
    applied = await upgrade(async_db, ["main"], schema_root=root.parent)

    rows = {
        row["id"]: dict(row) for row in await async_db.fetchall("SELECT * FROM moderation_actions")
    }
    assert {name: rows[i]["status"] for name, i in back.items()} == dict.fromkeys(back, "pending")
    for i in back.values():
        assert rows[i]["next_attempt_at"] <= datetime.now(UTC)
        kept = ("attempts", "last_error", "requested_at", "idempotence_key", "chat_id")
        assert {k: rows[i][k] for k in kept} == {k: rows_before[i][k] for k in kept}
    assert {i: rows[i] for i in stays.values()} == {i: rows_before[i] for i in stays.values()}
    assert (8, "rights_refusals_retried") in [(a.version, a.name) for a in applied]
