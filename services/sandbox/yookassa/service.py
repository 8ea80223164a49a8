"""YooKassa payments, saved payment methods and refunds, with notifications on status changes."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from services.sandbox.clock import Clock, iso
from services.sandbox.config import SandboxConfig
from services.sandbox.webhooks import WebhookSender
from services.sandbox.yookassa import validation
from services.sandbox.yookassa.errors import YooKassaApiError, invalid
from services.sandbox.yookassa.idempotence import IdempotenceStore

log = structlog.get_logger("sandbox.yookassa")

#: Pending payments the user never confirmed are canceled after this long.
CONFIRMATION_TTL_S = 3600
#: waiting_for_capture payments are canceled if not captured in 7 days.
CAPTURE_TTL_S = 7 * 24 * 3600
#: How many API calls the request log keeps.
REQUEST_LOG_SIZE = 10_000
#: The sandbox's commission, for income_amount.
FEE_RATE = Decimal("0.035")

MERCHANT_REASONS = {"canceled_by_merchant", "expired_on_capture"}
YOO_MONEY_REASONS = {
    "permission_revoked",
    "fraud_suspected",
    "general_decline",
    "internal_timeout",
    "expired_on_confirmation",
    "canceled_by_provider",
    "deal_expired",
}
CANCELLATION_REASONS = (
    MERCHANT_REASONS
    | YOO_MONEY_REASONS
    | {
        "3d_secure_failed",
        "call_issuer",
        "card_expired",
        "country_forbidden",
        "identification_required",
        "insufficient_funds",
        "invalid_card_number",
        "invalid_csc",
        "issuer_unavailable",
        "payment_method_limit_exceeded",
        "payment_method_restricted",
    }
)


def cancellation_party(reason: str) -> str:
    if reason in MERCHANT_REASONS:
        return "merchant"
    if reason in YOO_MONEY_REASONS:
        return "yoo_money"
    return "payment_network"


def sandbox_uuid(counter: int, kind: int) -> str:
    """A deterministic id shaped like YooKassa's (time-ordered UUID look-alike)."""
    return f"{counter:08x}-{kind:04x}-5000-9000-{counter:012x}"


@dataclass
class SavedMethod:
    data: dict[str, Any]
    revoked: bool = False
    #: Decline reasons scripted by the control API, used by the next charges in order.
    declines: deque[str] = field(default_factory=deque)


@dataclass
class Payment:
    id: str
    status: str
    amount: Decimal
    currency: str
    created_at: float
    capture: bool
    save_payment_method: bool
    description: str | None = None
    metadata: dict[str, Any] | None = None
    confirmation: dict[str, Any] | None = None
    payment_method: dict[str, Any] | None = None
    captured_amount: Decimal | None = None
    captured_at: float | None = None
    expires_at: float | None = None
    cancellation: dict[str, str] | None = None
    refunded: Decimal = Decimal("0")
    recipient: dict[str, str] = field(default_factory=dict)

    def money(self, value: Decimal) -> dict[str, str]:
        return {"value": validation.money(value), "currency": self.currency}

    def to_api(self) -> dict[str, Any]:
        paid = self.status in ("waiting_for_capture", "succeeded")
        amount = self.captured_amount if self.captured_amount is not None else self.amount
        data: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "amount": self.money(amount),
        }
        if self.status == "succeeded":
            data["income_amount"] = self.money(
                amount - (amount * FEE_RATE).quantize(Decimal("0.01"))
            )
        if self.description is not None:
            data["description"] = self.description
        data["recipient"] = self.recipient
        if self.payment_method is not None:
            data["payment_method"] = self.payment_method
        if self.captured_at is not None:
            data["captured_at"] = iso(self.captured_at)
        data["created_at"] = iso(self.created_at)
        if self.expires_at is not None:
            data["expires_at"] = iso(self.expires_at)
        if self.status == "pending" and self.confirmation is not None:
            data["confirmation"] = self.confirmation
        data["test"] = True
        if self.refunded > 0:
            data["refunded_amount"] = self.money(self.refunded)
        data["paid"] = paid
        data["refundable"] = self.status == "succeeded" and self.refunded < amount
        data["metadata"] = self.metadata or {}
        if self.cancellation is not None:
            data["cancellation_details"] = self.cancellation
        if paid:
            data["authorization_details"] = {
                "rrn": f"{int(self.id[:8], 16):012d}",
                "auth_code": f"{int(self.id[:8], 16) % 1000000:06d}",
                "three_d_secure": {"applied": self.confirmation is not None},
            }
        return data


class YooKassaService:
    def __init__(self, config: SandboxConfig, clock: Clock, sender: WebhookSender) -> None:
        self.config = config
        self.clock = clock
        self.sender = sender
        self.webhook_url = config.yookassa_webhook_url
        self.idempotence = IdempotenceStore(config.idempotence_retention_s)
        self.reset()

    def reset(self) -> None:
        self.payments: dict[str, Payment] = {}
        self.methods: dict[str, SavedMethod] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        #: The API calls received, oldest first (control API: /_sandbox/yookassa/requests).
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.idempotence.reset()
        #: The last id handed out (kept by the state file, so ids never repeat).
        self.counter = 0
        self.webhook_url = self.config.yookassa_webhook_url

    def next_counter(self) -> int:
        self.counter += 1
        return self.counter

    # notifications --------------------------------------------------------------------------

    def notify(self, event: str, obj: dict[str, Any]) -> None:
        log.info("notification_queued", event_name=event, object_id=obj["id"])
        if self.webhook_url:
            payload = {"type": "notification", "event": event, "object": obj}
            self.sender.send_with_retries("yookassa", self.webhook_url, payload)

    def _changed(self, payment: Payment) -> None:
        self.notify(f"payment.{payment.status}", payment.to_api())

    # lookups -----------------------------------------------------------------------------------

    def payment(self, payment_id: str) -> Payment:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise YooKassaApiError("not_found", "Payment not found or forbidden", "payment_id")
        self._expire(payment)
        return payment

    def _expire(self, payment: Payment) -> None:
        now = self.clock.now()
        if payment.status == "pending" and now >= payment.created_at + CONFIRMATION_TTL_S:
            self._cancel(payment, "expired_on_confirmation")
        elif (
            payment.status == "waiting_for_capture"
            and payment.expires_at is not None
            and now >= payment.expires_at
        ):
            self._cancel(payment, "expired_on_capture")

    def record_request(
        self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str]
    ) -> None:
        self.requests.append(
            {
                "method": method,
                "path": path,
                "query": query,
                "idempotence_key": headers.get("Idempotence-Key"),
                "at": self.clock.now(),
            }
        )

    def payments_newest_first(self) -> list[Payment]:
        newest_first = list(reversed(self.payments.values()))
        for payment in newest_first:
            self._expire(payment)
        return newest_first

    def list_payments(self, status: str | None, limit: int) -> list[Payment]:
        items = []
        for payment in reversed(list(self.payments.values())):
            self._expire(payment)
            if status is None or payment.status == status:
                items.append(payment)
        return items[:limit]

    # transitions -------------------------------------------------------------------------------

    def create_payment(self, body: dict[str, Any], base_url: str) -> Payment:
        value, currency = validation.amount(body)
        method_id = validation.string_id(body, "payment_method_id")
        capture = validation.optional_bool(body, "capture")
        save = validation.optional_bool(body, "save_payment_method")
        confirmation = validation.confirmation(body, required=method_id is None)
        saved = None
        if method_id is not None:
            saved = self.methods.get(method_id)
            if saved is None:
                raise invalid("Payment method is not found or saved", "payment_method_id")
        payment = Payment(
            id=sandbox_uuid(self.next_counter(), 0x000F),
            status="pending",
            amount=value,
            currency=currency,
            created_at=self.clock.now(),
            capture=capture,
            save_payment_method=save,
            description=validation.description(body),
            metadata=validation.metadata(body),
            recipient={"account_id": self.config.yookassa_shop_id, "gateway_id": "1000001"},
        )
        if confirmation is not None:
            payment.confirmation = self._confirmation(payment, confirmation, base_url)
        self.payments[payment.id] = payment
        log.info(
            "payment_created", payment_id=payment.id, amount=str(value), recurring=saved is not None
        )
        if saved is not None:
            # Recurring charge: no user in the loop, the outcome is known at once.
            payment.payment_method = dict(saved.data)
            if saved.revoked:
                self._cancel(payment, "permission_revoked")
            elif saved.declines:
                self._cancel(payment, saved.declines.popleft())
            else:
                self._authorize(payment)
        return payment

    def _confirmation(
        self, payment: Payment, request: dict[str, Any], base_url: str
    ) -> dict[str, Any]:
        kind = request["type"]
        if kind == "redirect":
            result: dict[str, Any] = {
                "type": "redirect",
                "confirmation_url": f"{base_url}/_sandbox/yookassa/checkout/{payment.id}",
            }
            if request.get("return_url"):
                result["return_url"] = request["return_url"]
            return result
        if kind == "embedded":
            return {"type": "embedded", "confirmation_token": f"ct-{payment.id}"}
        if kind == "qr":
            return {
                "type": "qr",
                "confirmation_data": f"{base_url}/_sandbox/yookassa/checkout/{payment.id}",
            }
        return {"type": kind}

    def _new_card(self, saved: bool) -> dict[str, Any]:
        return {
            "type": "bank_card",
            "id": sandbox_uuid(self.next_counter(), 0x0000),
            "saved": saved,
            "status": "active" if saved else "inactive",
            "title": "Bank card *4444",
            "card": {
                "first6": "555555",
                "last4": "4444",
                "expiry_year": "2030",
                "expiry_month": "12",
                "card_type": "MasterCard",
                "issuer_country": "RU",
            },
        }

    def _authorize(self, payment: Payment) -> None:
        now = self.clock.now()
        if payment.capture:
            payment.status = "succeeded"
            payment.captured_at = now
            payment.captured_amount = payment.amount
        else:
            payment.status = "waiting_for_capture"
            payment.expires_at = now + CAPTURE_TTL_S
        self._changed(payment)

    def _cancel(self, payment: Payment, reason: str, party: str | None = None) -> None:
        payment.status = "canceled"
        payment.expires_at = None
        payment.cancellation = {"party": party or cancellation_party(reason), "reason": reason}
        log.info("payment_canceled", payment_id=payment.id, reason=reason)
        self._changed(payment)

    def confirm(self, payment_id: str, card: dict[str, Any] | None = None) -> Payment:
        """What the user does on the checkout page (control API): pay."""
        payment = self.payment(payment_id)
        if payment.status != "pending":
            raise invalid(f"Payment is in status {payment.status}, not pending", "payment_id")
        method = self._new_card(saved=payment.save_payment_method)
        if card:
            method["card"] = {**method["card"], **card}
            method["title"] = f"Bank card *{method['card']['last4']}"
        payment.payment_method = method
        if payment.save_payment_method:
            self.methods[method["id"]] = SavedMethod(data=method)
        self._authorize(payment)
        return payment

    def decline(self, payment_id: str, reason: str, party: str | None = None) -> Payment:
        """The user's bank (or the user) refuses: cancel with a reason (control API)."""
        if reason not in CANCELLATION_REASONS:
            raise invalid(f"Unknown cancellation reason {reason}", "reason")
        payment = self.payment(payment_id)
        if payment.status not in ("pending", "waiting_for_capture"):
            raise invalid(f"Payment is in status {payment.status}", "payment_id")
        self._cancel(payment, reason, party)
        return payment

    def capture(self, payment_id: str, body: dict[str, Any]) -> Payment:
        payment = self.payment(payment_id)
        if payment.status == "succeeded":
            return payment
        if payment.status != "waiting_for_capture":
            raise invalid(f"Payment in status {payment.status} can't be captured", "payment_id")
        value = payment.amount
        if "amount" in body:
            value, currency = validation.amount(body)
            if currency != payment.currency or value > payment.amount:
                raise invalid("Capture amount exceeds the payment amount", "amount.value")
        payment.status = "succeeded"
        payment.captured_at = self.clock.now()
        payment.captured_amount = value
        payment.expires_at = None
        self._changed(payment)
        return payment

    def cancel(self, payment_id: str) -> Payment:
        payment = self.payment(payment_id)
        if payment.status == "canceled":
            return payment
        if payment.status != "waiting_for_capture":
            raise invalid(f"Payment in status {payment.status} can't be canceled", "payment_id")
        self._cancel(payment, "canceled_by_merchant")
        return payment

    def create_refund(self, body: dict[str, Any]) -> dict[str, Any]:
        payment_id = validation.string_id(body, "payment_id")
        if payment_id is None:
            raise invalid("Required parameter payment_id is missing", "payment_id")
        value, currency = validation.amount(body)
        payment = self.payment(payment_id)
        if payment.status != "succeeded":
            raise invalid(f"Payment in status {payment.status} can't be refunded", "payment_id")
        captured = payment.captured_amount or payment.amount
        if currency != payment.currency or payment.refunded + value > captured:
            raise invalid("Refund amount exceeds the amount available for refund", "amount.value")
        payment.refunded += value
        refund: dict[str, Any] = {
            "id": sandbox_uuid(self.next_counter(), 0x0015),
            "payment_id": payment.id,
            "status": "succeeded",
            "created_at": self.clock.iso_now(),
            "amount": payment.money(value),
        }
        description = validation.description(body)
        if description is not None:
            refund["description"] = description
        self.refunds[refund["id"]] = refund
        self.notify("refund.succeeded", refund)
        return refund

    def refund(self, refund_id: str) -> dict[str, Any]:
        refund = self.refunds.get(refund_id)
        if refund is None:
            raise YooKassaApiError("not_found", "Refund not found or forbidden", "refund_id")
        return refund

    # saved methods (control API) ---------------------------------------------------------------

    def saved_method(self, method_id: str) -> SavedMethod:
        saved = self.methods.get(method_id)
        if saved is None:
            raise YooKassaApiError("not_found", "Payment method not found", "payment_method_id")
        return saved

    def add_saved_method(self) -> SavedMethod:
        """A card saved earlier, for tests that start from an existing subscription."""
        method = self._new_card(saved=True)
        saved = SavedMethod(data=method)
        self.methods[method["id"]] = saved
        return saved
