"""Payment creation: the row and its idempotence key are committed BEFORE YooKassa is called.

1. One INSERT ... ON CONFLICT (idempotence_key) DO NOTHING commits the payment as `created`. The
   stored key is derived from the member and the client's `Idempotence-Key`, so a retried request
   finds the same row and never creates a second one (nor a second provider payment).
2. YooKassa is called outside any transaction with that same key; a retry after a crash or a
   timeout repeats the call with the same key and gets the provider's original payment back. The
   request body is committed with the row (metadata `provider_request`), so every repeat, the
   API's or payment_monitor's, sends the very same request (first request wins).
3. The answer is written to the row: provider id, status and confirmation_url.

4. One open checkout per member and tariff: a request with another key finds the member's open
   payment of that tariff (younger than OPEN_PAYMENT_REUSE, saving the card the same way, at
   the tariff's present price and period: `amount_minor` and `period_days` are fixed on the row
   when it is committed, and the period is what payment_monitor applies) and gets it back
   instead of a second checkout page the member could pay too. The member's row is locked
   first, so concurrent requests of one member (ten taps of a Pay button, each its own key) are
   decided one after the other and make one payment. A pending one is first
   asked of YooKassa: one it already canceled (its notification not applied yet) is passed
   over, so a member is never handed a checkout page they cannot pay.

A payment whose provider call failed stays `created`: the client may retry with the same key
(the API answers 502 with `payment_id`), and payment_monitor reconciles what is left.

A retry is sent to YooKassa again only while the key is surely still remembered there
(`key_window`, PAYMENT_KEY_WINDOW_H, 23 h from the commit; YooKassa keeps keys about 24 h from
their first use). Later, a repeat could create a second payment beside one the first call may
have made, so the retry is refused (409 `idempotence_key_expired`) and the payment canceled,
exactly as payment_monitor cancels it when no retry comes. Refusing, rather than quietly
starting a new payment under the old key, keeps the key's promise (one payment per key) and
leaves the decision to charge the member now to the client, who sends a new key for it.

Saving the card (`save_payment_method`) follows the member's own wish by default: a member who
stopped auto-renewal (/cancel_autorenew) pays once, without a saved card. A client that asks
to save it explicitly has told the payer so; the card is saved, yet a member's own stop stays
in force (payment_monitor never switches auto-renewal back on over it): only the member's
/autorenew_on ends it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from monitors import texts
from payments.amounts import amount_value
from payments.client import YooKassaClient
from payments.decisions import (
    EXPIRED_KEY_REASON,
    CreateVerdict,
    classify_create,
    expired_key_note,
    key_expired,
    stored_request,
)
from payments.renewals import AutoRenewalInProgress, refuse_while_auto_charging
from payments.requests import checkout_request
from payments.settings import DEFAULT_KEY_WINDOW
from payments.store import (
    NewPayment,
    cancel_expired,
    cancel_refused,
    commit_payment,
    record_answer,
    reusable_payment,
    stopped_by_member,
)
from runtime.db import AsyncDatabase, Row
from services.api.errors import ApiError
from services.api.models import Amount, Payment, PaymentCreate

log = structlog.get_logger("api.payments")

#: A member's open payment of a tariff younger than this is given again to a request with
#: another key, rather than a second checkout beside it (the bot's BOT_PAYMENT_REUSE_S default:
#: YooKassa lets a checkout page lapse after about that long).
OPEN_PAYMENT_REUSE = timedelta(hours=1)

#: Namespace of the stored keys: uuid5(namespace, "<telegram id>:<client key>").
KEY_NAMESPACE = uuid.UUID("8f6c7f0e-4d0b-5f39-9d53-6a1f1b2c3d4e")

_PAYMENT = (
    "SELECT p.id, p.status, p.kind, p.user_id, p.tariff_id, p.amount_minor, p.currency, "
    "p.confirmation_url, p.provider_payment_id, p.cancellation_reason, p.created_at, "
    "p.description, p.save_payment_method, p.metadata, p.idempotence_key, u.telegram_id, "
    "t.code AS tariff_code "
    "FROM payments p JOIN users u ON u.id = p.user_id JOIN tariffs t ON t.id = p.tariff_id "
)


def stored_key(telegram_id: int, client_key: str) -> str:
    """The payments.idempotence_key (and YooKassa Idempotence-Key, ≤ 64 chars) of a request."""
    return "api-" + str(uuid.uuid5(KEY_NAMESPACE, f"{telegram_id}:{client_key}"))


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


class PaymentService:
    def __init__(
        self,
        db: AsyncDatabase,
        yookassa: YooKassaClient,
        return_url: str,
        *,
        key_window: timedelta = DEFAULT_KEY_WINDOW,
        reuse_open: timedelta = OPEN_PAYMENT_REUSE,
    ) -> None:
        self.db = db
        self.yookassa = yookassa
        self.return_url = return_url
        self.key_window = key_window
        self.reuse_open = reuse_open

    async def create(self, request: PaymentCreate, client_key: str) -> tuple[Payment, bool]:
        """The payment of this request; True when this call created the row."""
        key = stored_key(request.telegram_id, client_key)
        passed_over: list[int] = []
        while True:
            row, created, reused = await self._commit_row(request, key, passed_over)
            if not reused or not await self._ended_unnoticed(row):
                break
            # Its checkout page is dead: a new payment, not a page the member cannot pay.
            passed_over.append(row["id"])
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
                row = await self._call_provider(
                    row, row["idempotence_key"], request.return_url or self.return_url
                )
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
        canceled = await cancel_expired(
            self.db, row["id"], expired_key_note(row["created_at"], now, self.key_window), now
        )
        if canceled:
            log.warning("payment_key_expired", payment_id=row["id"])
        fresh = await self.db.fetchone(_PAYMENT + "WHERE p.id = ?", (row["id"],))
        assert fresh is not None
        return fresh

    async def _ended_unnoticed(self, row: Row) -> bool:
        """Whether YooKassa already canceled this open payment (its notification not applied
        yet). Asked only of a payment found for another key; any doubt (no answer) keeps it."""
        if row["status"] != "pending" or row["provider_payment_id"] is None:
            return False
        status, answer = await self.yookassa.get_payment(row["provider_payment_id"])
        ended = (
            status == 200
            and answer is not None
            and answer.get("id") == row["provider_payment_id"]
            and answer.get("status") == "canceled"
        )
        if ended:
            log.info("payment_reuse_skipped_canceled", payment_id=row["id"])
        return ended

    async def _commit_row(
        self, request: PaymentCreate, key: str, passed_over: list[int]
    ) -> tuple[Row, bool, bool]:
        """The row of this key, or the member's open payment of the tariff (but those passed
        over), or a new one: (row, created by this call, an open payment of another key)."""
        async with self.db.transaction() as tx:
            existing = await tx.fetchone(_PAYMENT + "WHERE p.idempotence_key = ?", (key,))
            if existing is not None:
                return existing, False, False
            context = await tx.fetchone(
                "SELECT u.id AS user_id, t.id AS tariff_id, t.price_minor, t.currency, t.title,"
                " t.period_days, t.is_active FROM users u, tariffs t"
                " WHERE u.telegram_id = ? AND t.code = ?",
                (request.telegram_id, request.tariff_code),
            )
            if context is None:
                raise await self._missing(tx, request)
            if not context["is_active"]:
                # The same answer as an unknown code: which codes exist off sale is not the
                # caller's business.
                raise _no_tariff(request.tariff_code)
            # The member's row lock: concurrent requests of one member (a Pay button tapped
            # twice, each tap its own key) are decided one after the other, so the second
            # finds the first's payment below (PostgreSQL; SQLite's BEGIN IMMEDIATE already
            # serialises them).
            await tx.execute(
                "UPDATE users SET updated_at = updated_at WHERE id = ?", (context["user_id"],)
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
            save_card = request.save_payment_method
            if save_card is None:
                # The member's own "stop auto-renewal" is respected by default.
                save_card = not await stopped_by_member(tx, context["user_id"])
            where, params = reusable_payment(
                "p",
                user_id=context["user_id"],
                tariff_id=context["tariff_id"],
                price_minor=context["price_minor"],
                currency=context["currency"],
                period_days=context["period_days"],
                since=datetime.now(UTC) - self.reuse_open,
                save_card=save_card,
            )
            open_payment = await tx.fetchone(
                _PAYMENT
                + f"WHERE {where}"
                + "".join(" AND p.id <> ?" for _ in passed_over)
                + " ORDER BY p.id DESC LIMIT 1",
                (*params, *passed_over),
            )
            if open_payment is not None:
                log.info(
                    "payment_reused",
                    payment_id=open_payment["id"],
                    telegram_id=request.telegram_id,
                )
                return open_payment, False, True
            new = NewPayment(
                idempotence_key=key,
                user_id=context["user_id"],
                tariff_id=context["tariff_id"],
                subscription_id=live,
                amount_minor=context["price_minor"],
                currency=context["currency"],
                period_days=context["period_days"],
                description=texts.payment_description(context["title"], context["period_days"]),
                save_payment_method=save_card,
                metadata={
                    "source": "api",
                    "telegram_id": request.telegram_id,
                    "tariff_id": context["tariff_id"],
                },
            )
            payment_id = await commit_payment(tx, new, request.return_url or self.return_url)
            row = await tx.fetchone(_PAYMENT + "WHERE p.idempotence_key = ?", (key,))
        assert row is not None
        if payment_id is not None:
            log.info("payment_committed", payment_id=payment_id, telegram_id=request.telegram_id)
        return row, payment_id is not None, False

    async def _missing(self, tx: Any, request: PaymentCreate) -> ApiError:
        user = await tx.fetchval(
            "SELECT id FROM users WHERE telegram_id = ?", (request.telegram_id,)
        )
        if user is None:
            return ApiError(
                404, "user_not_found", f"no member with telegram id {request.telegram_id}"
            )
        return _no_tariff(request.tariff_code)

    async def _call_provider(self, row: Row, key: str, return_url: str) -> Row:
        # Rows committed before requests were stored: rebuilt as they were then.
        body = stored_request(row) or checkout_request(row, return_url)
        status, answer = await self.yookassa.create_payment(body, key)
        result = classify_create(status, answer)
        now = datetime.now(UTC)
        if result.verdict is CreateVerdict.REFUSED:
            assert result.reason is not None
            # Nothing exists at the provider and nothing is to be applied: processed at once.
            await cancel_refused(self.db, row["id"], result.reason, now)
            log.warning("payment_provider_rejected", payment_id=row["id"], reason=result.reason)
        elif result.verdict is CreateVerdict.RECORD:
            assert answer is not None
            await record_answer(self.db, row["id"], answer, now)
            log.info(
                "payment_created",
                payment_id=row["id"],
                provider_payment_id=answer["id"],
                status=answer.get("status"),
            )
        else:
            # Unknown, or our credentials refused (401: nothing was made, the key is not spent).
            await self.db.execute(
                "UPDATE payments SET last_error = ?, updated_at = ? WHERE id = ?",
                (f"provider answer unknown (HTTP {status})", now, row["id"]),
            )
            log.warning(
                "payment_provider_unavailable",
                payment_id=row["id"],
                http_status=status,
                verdict=result.verdict.value,
            )
            raise ApiError(
                502,
                "provider_unavailable",
                f"YooKassa did not confirm payment {row['id']}; "
                "retry with the same Idempotence-Key",
            )
        fresh = await self.db.fetchone(_PAYMENT + "WHERE p.id = ?", (row["id"],))
        assert fresh is not None
        return fresh


def _no_tariff(code: str) -> ApiError:
    return ApiError(404, "tariff_not_found", f"no tariff with code {code!r} is on sale")


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
