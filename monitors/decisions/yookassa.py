"""What a YooKassa answer means for a charge: classification of declines and responses.

Follows the provider's own recommendations (see NOTES.md): a 5xx or a network failure leaves the
outcome unknown, so the same Idempotence-Key is repeated or the payment is fetched; a 4xx or a
canceled payment needs a new key; pending payments are polled. Cancellation reasons split into soft
declines (retry later on a schedule) and hard declines (stop auto-renewal, tell the member).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitors.decisions.backoff import SOFT_DECLINE, RetrySchedule


class DeclineKind(enum.Enum):
    SOFT = "soft"
    HARD = "hard"
    UNKNOWN = "unknown"


#: The card may work later: retry on the soft schedule.
SOFT_REASONS = frozenset(
    {
        "insufficient_funds",
        "issuer_unavailable",
        "internal_timeout",
        "general_decline",
        "call_issuer",
        "payment_method_limit_exceeded",
    }
)
#: Retrying cannot help (or is not allowed): stop auto-renewal and ask the member to pay by hand.
HARD_REASONS = frozenset(
    {
        "permission_revoked",
        "card_expired",
        "invalid_card_number",
        "invalid_csc",
        "fraud_suspected",
        "payment_method_restricted",
        "country_forbidden",
        # A saved-method charge cannot pass 3-D Secure or identification without the member.
        "3d_secure_failed",
        "identification_required",
        "canceled_by_merchant",
    }
)


def classify_decline(reason: str | None) -> DeclineKind:
    if reason in SOFT_REASONS:
        return DeclineKind.SOFT
    if reason in HARD_REASONS:
        return DeclineKind.HARD
    return DeclineKind.UNKNOWN


class DeclineAction(enum.Enum):
    RETRY_LATER = "retry_later"
    STOP_AUTO_RENEWAL = "stop_auto_renewal"


@dataclass(frozen=True)
class DeclineDecision:
    kind: DeclineKind
    action: DeclineAction
    retry_at: datetime | None
    reason: str | None


#: Unknown reasons are retried, but only once: they are neither trusted nor hammered.
UNKNOWN_REASON_MAX_ATTEMPTS = 2


def decide_after_decline(
    reason: str | None,
    *,
    failed_attempts: int,
    now: datetime,
    retry_until: datetime | None = None,
    schedule: RetrySchedule = SOFT_DECLINE,
) -> DeclineDecision:
    """After a canceled charge: retry later (when) or stop auto-renewal.

    `failed_attempts` counts the declined attempts for this period including this one.
    `retry_until` (typically the end of the grace period) stops retries that would land too late.
    """
    kind = classify_decline(reason)
    stop = DeclineDecision(kind, DeclineAction.STOP_AUTO_RENEWAL, None, reason)
    if kind is DeclineKind.HARD:
        return stop
    if kind is DeclineKind.UNKNOWN and failed_attempts >= UNKNOWN_REASON_MAX_ATTEMPTS:
        return stop
    retry_at = schedule.next_attempt_at(now, failed_attempts)
    if retry_at is None or (retry_until is not None and retry_at >= retry_until):
        return stop
    return DeclineDecision(kind, DeclineAction.RETRY_LATER, retry_at, reason)


class ChargeOutcome(enum.Enum):
    SUCCEEDED = "succeeded"
    #: Accepted, not final: wait for the webhook or GET the payment with backoff.
    PENDING = "pending"
    #: Final failure; see `cancellation_reason`.
    CANCELED = "canceled"
    #: The provider may or may not have the payment: repeat with the SAME key, or GET it.
    UNKNOWN = "unknown"
    #: The request was refused (4xx): nothing was created; a retry needs a NEW key and new data.
    REJECTED = "rejected"


@dataclass(frozen=True)
class ChargeResult:
    outcome: ChargeOutcome
    payment_id: str | None = None
    cancellation_reason: str | None = None
    #: Seconds the provider asked us to wait (429 Retry-After), if any.
    retry_after_s: float | None = None
    error_code: str | None = None


def classify_payment_object(payment: Mapping[str, Any]) -> ChargeResult:
    """Classify a payment object (from POST /v3/payments, GET /v3/payments/{id} or a webhook)."""
    payment_id = payment.get("id")
    status = payment.get("status")
    if status == "succeeded":
        return ChargeResult(ChargeOutcome.SUCCEEDED, payment_id)
    if status == "canceled":
        details = payment.get("cancellation_details") or {}
        return ChargeResult(ChargeOutcome.CANCELED, payment_id, details.get("reason"))
    if status in ("pending", "waiting_for_capture"):
        return ChargeResult(ChargeOutcome.PENDING, payment_id)
    # A 200 with a body we do not understand is not proof of anything: reconcile by GET.
    return ChargeResult(ChargeOutcome.UNKNOWN, payment_id)


def classify_response(
    http_status: int | None,
    body: Mapping[str, Any] | None,
    retry_after_s: float | None = None,
) -> ChargeResult:
    """Classify one HTTP exchange; `http_status=None` means no answer arrived (network error)."""
    if http_status is None or http_status >= 500:
        return ChargeResult(ChargeOutcome.UNKNOWN)
    if http_status == 429:
        return ChargeResult(ChargeOutcome.UNKNOWN, retry_after_s=retry_after_s or 1.0)
    if 200 <= http_status < 300:
        return classify_payment_object(body or {})
    code = (body or {}).get("code")
    return ChargeResult(ChargeOutcome.REJECTED, error_code=code if isinstance(code, str) else None)
