"""Advert and contract tokens: issue (random, shown once), verify, use, revoke.

A token is `<kind prefix>_<secrets.token_urlsafe(32)>` (256 random bits). Only its hash is stored:
HMAC-SHA256 with the server key API_TOKEN_HASH_KEY, or plain SHA-256 when no key is configured
(a database leak then still does not reveal usable tokens, but the key also protects against
offline guessing of weak tokens issued elsewhere). The lookup is by hash; the stored hash is then
compared with `hmac.compare_digest`. Both logical databases `advert` and `contract` have the same
tables, so one implementation serves both.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from runtime.config import Secret
from runtime.db import AsyncDatabase, Row
from services.api.errors import ApiError
from services.api.models import IssuedToken, TokenInfo, TokenIssue, TokenKind, TokenUsed

TOKEN_PREFIXES: dict[str, str] = {"advert": "adv", "contract": "ctr"}
#: Characters of the token kept for recognition in the admin: the kind prefix and 8 random ones.
RECOGNITION_CHARS = 12

State = Literal["valid", "revoked", "expired", "exhausted"]

_COLUMNS = (
    "id, token_hash, token_prefix, issued_to, issued_by, scope, note, created_at, expires_at, "
    "revoked_at, revoked_reason, max_uses, use_count, last_used_at"
)


@dataclass(frozen=True)
class TokenHasher:
    key: Secret | None

    def hash(self, token: str) -> str:
        data = token.encode()
        if self.key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self.key.reveal().encode(), data, hashlib.sha256).hexdigest()


def generate_token(kind: str) -> str:
    return f"{TOKEN_PREFIXES[kind]}_{secrets.token_urlsafe(32)}"


def token_state(row: Row, now: datetime) -> State:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and row["expires_at"] <= now:
        return "expired"
    if row["max_uses"] is not None and row["use_count"] >= row["max_uses"]:
        return "exhausted"
    return "valid"


def uses_left(row: Row) -> int | None:
    return None if row["max_uses"] is None else max(0, row["max_uses"] - row["use_count"])


def token_info(kind: TokenKind, row: Row, now: datetime) -> dict[str, Any]:
    fields = {name: row[name] for name in TokenInfo.model_fields if name in row}
    return {**fields, "kind": kind, "state": token_state(row, now)}


def _now() -> datetime:
    return datetime.now(UTC)


class TokenStore:
    """Token operations on the logical database named like the kind (`advert`, `contract`)."""

    def __init__(self, db: AsyncDatabase, kind: TokenKind, hasher: TokenHasher) -> None:
        self.db = db
        self.kind: TokenKind = kind
        self.hasher = hasher

    async def issue(self, request: TokenIssue) -> IssuedToken:
        now = _now()
        if request.expires_at is not None and request.expires_at <= now:
            message = "invalid body.expires_at: must be in the future"
            raise ApiError(422, "validation_error", message)
        token = generate_token(self.kind)
        row = await self.db.fetchone(
            "INSERT INTO tokens (token_hash, token_prefix, issued_to, issued_by, scope, note, "
            "created_at, expires_at, max_uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"RETURNING {_COLUMNS}",
            (
                self.hasher.hash(token),
                token[:RECOGNITION_CHARS],
                request.issued_to,
                request.issued_by,
                request.scope,
                request.note,
                now,
                request.expires_at,
                request.max_uses,
            ),
            db=self.kind,
        )
        assert row is not None
        return IssuedToken(**token_info(self.kind, row, now), token=token)

    async def get(self, token_id: int) -> TokenInfo:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (token_id,), db=self.kind
        )
        if row is None:
            raise ApiError(404, "token_not_found", f"no {self.kind} token with id {token_id}")
        return TokenInfo(**token_info(self.kind, row, _now()))

    async def list(self, issued_to: str | None, limit: int, offset: int) -> list[TokenInfo]:
        where, params = ("WHERE issued_to = ?", [issued_to]) if issued_to is not None else ("", [])
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM tokens {where} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset),
            db=self.kind,
        )
        now = _now()
        return [TokenInfo(**token_info(self.kind, row, now)) for row in rows]

    async def revoke(self, token_id: int, reason: str) -> TokenInfo:
        # Revoking twice keeps the first revocation's time and reason.
        await self.db.execute(
            "UPDATE tokens SET revoked_at = ?, revoked_reason = ? "
            "WHERE id = ? AND revoked_at IS NULL",
            (_now(), reason, token_id),
            db=self.kind,
        )
        return await self.get(token_id)

    async def find(self, token: str) -> Row | None:
        token_hash = self.hasher.hash(token)
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM tokens WHERE token_hash = ?", (token_hash,), db=self.kind
        )
        if row is None or not hmac.compare_digest(row["token_hash"], token_hash):
            return None
        return row

    async def use(
        self,
        token: str,
        *,
        used_by: str | None,
        details: str | None,
        ip: str | None,
        user_agent: str | None,
    ) -> TokenUsed:
        """Count one use atomically: the guarded UPDATE admits at most `max_uses` uses even
        under concurrent requests, and the use is recorded in the same transaction."""
        token_hash = self.hasher.hash(token)
        now = _now()
        async with self.db.transaction(db=self.kind) as tx:
            row = await tx.fetchone(
                "UPDATE tokens SET use_count = use_count + 1, last_used_at = ? "
                "WHERE token_hash = ? AND revoked_at IS NULL "
                "AND (expires_at IS NULL OR expires_at > ?) "
                "AND (max_uses IS NULL OR use_count < max_uses) "
                f"RETURNING {_COLUMNS}",
                (now, token_hash, now),
            )
            if row is not None and hmac.compare_digest(row["token_hash"], token_hash):
                await tx.execute(
                    "INSERT INTO token_uses (token_id, used_at, used_by, ip, user_agent, details) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (row["id"], now, used_by, ip, user_agent, _details(details)),
                )
                return TokenUsed(
                    token_id=row["id"],
                    scope=row["scope"],
                    issued_to=row["issued_to"],
                    use_count=row["use_count"],
                    uses_left=uses_left(row),
                )
        # Nothing was counted: say why.
        current = await self.find(token)
        if current is None:
            raise ApiError(401, "token_invalid", f"the {self.kind} token is not valid")
        state = token_state(current, now)
        raise ApiError(403, f"token_{state}", f"the {self.kind} token is {state}")


def _details(details: str | None) -> dict[str, str] | None:
    return None if details is None else {"text": details}
