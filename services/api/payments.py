"""Payment creation: the row and its idempotence key are committed BEFORE YooKassa is called.

1. One INSERT ... ON CONFLICT (idempotence_key) DO NOTHING commits the payment as `created`. The
   stored key is derived from the member and the client's `Idempotence-Key`, so a retried request
   finds the same row and never creates a second one (nor a second provider payment).
2. YooKassa is called outside any transaction with that same key; a retry after a crash or a
   timeout repeats the call with the same key and gets the provider's original payment back. The
   request body is committed with the row (metadata `provider_request`), so every repeat, the
   API's or payment_monitor's, sends the very same request (first request wins).
3. The answer is written to the row: provider id, status and confirmation_url.

A payment whose provider call failed stays `created`: the client may retry with the same key
(the API answers 502 with `payment_id`), and payment_monitor reconciles what is left.

A retry is sent to YooKassa again only while the key is surely still remembered there
(`key_window`, PAYMENT_KEY_WINDOW_H, 23 h from the commit; YooKassa keeps keys about 24 h from
their first use). Later, a repeat could create a second payment beside one the first call may
have made, so the retry is refused (409 `idempotence_key_expired`) and the payment canceled,
exactly as payment_monitor cancels it when no retry comes. Refusing, rather than quietly
starting a new payment under the old key, keeps the key's promise (one payment per key) and
leaves the decision to charge the member now to the client, who sends a new key for it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from payments.client import YooKassaClient
from payments.decisions import (
    EXPIRED_KEY_REASON,
    PROVIDER_REQUEST,
    ChargeOutcome,
    classify_response,
    expired_key_note,
    key_expired,
    stored_request,
)
from payments.renewals import AutoRenewalInProgress, refuse_while_auto_charging
from payments.settings import DEFAULT_KEY_WINDOW
from runtime.db import AsyncDatabase, Row
from services.api.errors import ApiError
from services.api.models import Amount, Payment, PaymentCreate

log = structlog.get_logger("api.payments")

#: Namespace of the stored keys: uuid5(namespace, "<telegram id>:<client key>").
KEY_NAMESPACE = uuid.UUID("8f6c7f0e-4d0b-5f39-9d53-6a1f1b2c3d4e")

_PAYMENT = (
    "SELECT p.id, p.status, p.kind, p.user_id, p.tariff_id, p.amount_minor, p.currency, "
    "p.confirmation_url, p.provider_payment_id, p.cancellation_reason, p.created_at, "
    "p.description, p.save_payment_method, p.metadata, u.telegram_id, t.code AS tariff_code "
    "FROM payments p JOIN users u ON u.id = p.user_id JOIN tariffs t ON t.id = p.tariff_id "
)


def stored_key(telegram_id: int, client_key: str) -> str:
    """The payments.idempotence_key (and YooKassa Idempotence-Key, ≤ 64 chars) of a request."""
    return "api-" + str(uuid.uuid5(KEY_NAMESPACE, f"{telegram_id}:{client_key}"))


def amount_value(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def to_model(row: Row) -> Payment:
    return Payment(
        id=row["id"],
        status=row["status"],
        kind=row["kind"],
        telegram_id=row["telegram_id"],
        tariff_code=row["tariff_code"],
        amount=Amount(value=amount_value(row["amount_minor"]), currency=row["currency"]),
        confirmation_url=row["confirmation_url"],
        provider_payment_id=row["provider_payment_id"],
        cancellation_reason=row["cancellation_reason"],
        created_at=row["created_at"],
    )


def provider_request(row: Row, return_url: str) -> dict[str, Any]:
    """The POST /v3/payments body of a committed payment row."""
    return {
        "amount": {"value": amount_value(row["amount_minor"]), "currency": row["currency"]},
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": return_url},
        "description": row["description"],
        "save_payment_method": bool(row["save_payment_method"]),
        "metadata": {"payment_row": str(row["id"]), "telegram_id": str(row["telegram_id"])},
    }


class PaymentService:
    def __init__(
        self,
        db: AsyncDatabase,
        yookassa: YooKassaClient,
        return_url: str,
        *,
        key_window: timedelta = DEFAULT_KEY_WINDOW,
    ) -> None:
        self.db = db
        self.yookassa = yookassa
        self.return_url = return_url
        self.key_window = key_window

    async def create(self, request: PaymentCreate, client_key: str) -> tuple[Payment, bool]:
        """The payment of this request; True when this call created the row."""
        key = stored_key(request.telegram_id, client_key)
        row, created = await self._commit_row(request, key)
        if row["tariff_code"] != request.tariff_code or row["telegram_id"] != request.telegram_id:
            raise ApiError(
                409,
                "idempotence_key_reused",
                "this Idempotence-Key was already used for a different payment",
            )
        if _never_sent(row):
            now = datetime.now(UTC)
            if key_expired(row["created_at"], now, self.key_window):
                row = await self._expire(row, now)
            if _never_sent(row):
                row = await self._call_provider(row, key, request.return_url or self.return_url)
        if _expired(row):
            raise ApiError(
                409,
                "idempotence_key_expired",
                f"payment {row['id']} was never confirmed by YooKassa and its Idempotence-Key is"
                " too old to be sent again (a repeat could charge twice); it is canceled."
                " Send a new Idempotence-Key to start a new payment",
            )
        return to_model(row), created

    async def _expire(self, row: Row, now: datetime) -> Row:
        """Cancel a never-confirmed payment whose key left the window, as payment_monitor does;
        the row as it is now (someone may have recorded the provider's answer meanwhile)."""
        canceled = await self.db.execute(
            "UPDATE payments SET status = 'canceled', cancellation_party = 'merchant',"
            " cancellation_reason = ?, last_error = ?, processed_at = ?, next_check_at = NULL,"
            " updated_at = ? WHERE id = ? AND status = 'created'"
            " AND provider_payment_id IS NULL AND processed_at IS NULL",
            (
                EXPIRED_KEY_REASON,
                expired_key_note(row["created_at"], now, self.key_window),
                now,
                now,
                row["id"],
            ),
        )
        if canceled:
            log.warning("payment_key_expired", payment_id=row["id"])
        fresh = await self.db.fetchone(_PAYMENT + "WHERE p.id = ?", (row["id"],))
        assert fresh is not None
        return fresh

    async def _commit_row(self, request: PaymentCreate, key: str) -> tuple[Row, bool]:
        async with self.db.transaction() as tx:
            existing = await tx.fetchone(_PAYMENT + "WHERE p.idempotence_key = ?", (key,))
            if existing is not None:
                return existing, False
            context = await tx.fetchone(
                "SELECT u.id AS user_id, t.id AS tariff_id, t.price_minor, t.currency, t.title, "
                "t.is_active FROM users u, tariffs t WHERE u.telegram_id = ? AND t.code = ?",
                (request.telegram_id, request.tariff_code),
            )
            if context is None:
                raise await self._missing(tx, request)
            if not context["is_active"]:
                raise ApiError(
                    409, "tariff_inactive", f"tariff {request.tariff_code!r} is not on sale"
                )
            live = await tx.fetchval(
                "SELECT id FROM subscriptions WHERE user_id = ? AND status IN ('active', 'grace')",
                (context["user_id"],),
            )
            if live is not None:
                try:
                    await refuse_while_auto_charging(tx, live)
                except AutoRenewalInProgress as exc:
                    raise ApiError(409, "renewal_in_progress", str(exc)) from exc
            payment_id = await tx.fetchval(
                "INSERT INTO payments (idempotence_key, user_id, tariff_id, subscription_id, kind,"
                " amount_minor, currency, description, save_payment_method, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (idempotence_key) DO NOTHING RETURNING id",
                (
                    key,
                    context["user_id"],
                    context["tariff_id"],
                    live,
                    "first" if live is None else "renewal",
                    context["price_minor"],
                    context["currency"],
                    f"Подписка: {context['title']}",
                    request.save_payment_method,
                    {"source": "api", "telegram_id": request.telegram_id},
                ),
            )
            row = await tx.fetchone(_PAYMENT + "WHERE p.idempotence_key = ?", (key,))
            assert row is not None
            if payment_id is not None:
                body = provider_request(row, request.return_url or self.return_url)
                metadata = {**row["metadata"], PROVIDER_REQUEST: body}
                await tx.execute(
                    "UPDATE payments SET metadata = ? WHERE id = ?", (metadata, payment_id)
                )
                row = await tx.fetchone(_PAYMENT + "WHERE p.id = ?", (payment_id,))
        assert row is not None
        if payment_id is not None:
            log.info("payment_committed", payment_id=payment_id, telegram_id=request.telegram_id)
        return row, payment_id is not None

    async def _missing(self, tx: Any, request: PaymentCreate) -> ApiError:
        user = await tx.fetchval(
            "SELECT id FROM users WHERE telegram_id = ?", (request.telegram_id,)
        )
        if user is None:
            return ApiError(
                404, "user_not_found", f"no member with telegram id {request.telegram_id}"
            )
        return ApiError(404, "tariff_not_found", f"no tariff with code {request.tariff_code!r}")

    async def _call_provider(self, row: Row, key: str, return_url: str) -> Row:
        # Rows committed before requests were stored: rebuilt as they were then.
        body = stored_request(row) or provider_request(row, return_url)
        status, answer = await self.yookassa.create_payment(body, key)
        result = classify_response(status, answer)
        now = datetime.now(UTC)
        answered = result.outcome is not ChargeOutcome.UNKNOWN and (
            result.payment_id is not None or result.outcome is ChargeOutcome.REJECTED
        )
        if not answered:
            await self.db.execute(
                "UPDATE payments SET last_error = ?, updated_at = ? WHERE id = ?",
                (f"provider answer unknown (HTTP {status})", now, row["id"]),
            )
            log.warning("payment_provider_unavailable", payment_id=row["id"], http_status=status)
            raise ApiError(
                502,
                "provider_unavailable",
                f"YooKassa did not confirm payment {row['id']}; "
                "retry with the same Idempotence-Key",
            )
        if result.outcome is ChargeOutcome.REJECTED:
            reason = result.error_code or "rejected"
            # Nothing exists at the provider and nothing is to be applied: processed at once.
            await self.db.execute(
                "UPDATE payments SET status = 'canceled', cancellation_party = 'yoo_money',"
                " cancellation_reason = ?, last_error = ?, processed_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'created'",
                (reason, _describe(answer), now, now, row["id"]),
            )
            log.warning("payment_provider_rejected", payment_id=row["id"], reason=reason)
        else:
            assert answer is not None
            await self._store_answer(row["id"], answer, now)
        fresh = await self.db.fetchone(_PAYMENT + "WHERE p.id = ?", (row["id"],))
        assert fresh is not None
        return fresh

    async def _store_answer(self, payment_id: int, answer: dict[str, Any], now: datetime) -> None:
        status = answer.get("status")
        confirmation = answer.get("confirmation") or {}
        details = answer.get("cancellation_details") or {}
        paid_at = now if status == "succeeded" else None
        await self.db.execute(
            "UPDATE payments SET provider_payment_id = ?, status = ?, confirmation_url = ?,"
            " cancellation_party = ?, cancellation_reason = ?, paid_at = ?, last_error = NULL,"
            " updated_at = ? WHERE id = ? AND status = 'created'",
            (
                answer["id"],
                status,
                confirmation.get("confirmation_url"),
                details.get("party"),
                details.get("reason"),
                paid_at,
                now,
                payment_id,
            ),
        )
        log.info(
            "payment_created",
            payment_id=payment_id,
            provider_payment_id=answer["id"],
            status=status,
        )


def _never_sent(row: Row) -> bool:
    """Committed, and YooKassa's answer never recorded: the call is to be (re)made."""
    return row["status"] == "created" and row["provider_payment_id"] is None


def _expired(row: Row) -> bool:
    """Canceled uncalled because its key left the window (here or by payment_monitor)."""
    return (
        row["status"] == "canceled"
        and row["provider_payment_id"] is None
        and row["cancellation_reason"] == EXPIRED_KEY_REASON
    )


def _describe(answer: dict[str, Any] | None) -> str:
    if not answer:
        return "provider refused the payment"
    return str(answer.get("description") or answer.get("code") or "provider refused the payment")
