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
from datetime import datetime, timedelta
from typing import Any

from payments.amounts import amount_minor
from payments.keys import charge_key
from payments.schedules import PAYMENT_POLL, SOFT_DECLINE
from runtime.retry import RetrySchedule


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


# --- polling open payments -----------------------------------------------------------------------


def next_poll_at(now: datetime, polls: int, schedule: RetrySchedule = PAYMENT_POLL) -> datetime:
    """When to fetch an open payment again after `polls` fetches.

    The schedule first, then every `cap_s` for as long as the payment stays open: a payment is
    never left open here, and YooKassa itself ends one nobody pays (expired_on_confirmation), so
    the tail is short in practice and only a fault (an id the provider lost) makes it long.
    """
    return schedule.next_attempt_at(now, polls) or now + timedelta(seconds=schedule.cap_s)


def poll_overdue(polls: int, schedule: RetrySchedule = PAYMENT_POLL) -> bool:
    """The payment has outlived its polling schedule (about a day): worth a warning."""
    return schedule.exhausted(polls)


# --- payments whose create call never returned --------------------------------------------------

#: The metadata field where a producer (API, bot) commits the exact POST /v3/payments body with
#: the row and its Idempotence-Key, before the call: a repeat must send the same body, since
#: YooKassa refuses a key reused with another one ("Idempotence key duplicated").
PROVIDER_REQUEST = "provider_request"


def stored_request(payment: Mapping[str, Any]) -> dict[str, Any] | None:
    """The create request committed with a payment row, if its producer stored one."""
    metadata = payment.get("metadata")
    request = metadata.get(PROVIDER_REQUEST) if isinstance(metadata, Mapping) else None
    return request if isinstance(request, dict) else None


class UnsentAction(enum.Enum):
    #: Within the grace period: the API's own call may still be under way.
    WAIT = "wait"
    #: Repeat the create request with the SAME key: the provider answers with the payment it
    #: created for the key, or creates it now if it never saw the key. Either way, one payment.
    RESEND = "resend"
    #: The key may have outlived the provider's idempotence window: a repeat could create a
    #: second payment beside one the first call made, so it is never sent again; the provider's
    #: payments are listed for one an earlier call made (payments.reconcile), and without one
    #: the payment is canceled, uncalled.
    EXPIRE = "expire"


@dataclass(frozen=True)
class UnsentDecision:
    action: UnsentAction
    #: WAIT: when the payment may be sent again.
    not_before: datetime | None = None


def decide_unsent_payment(
    created_at: datetime,
    now: datetime,
    *,
    grace: timedelta,
    key_window: timedelta,
    has_request: bool = True,
) -> UnsentDecision:
    """A first payment committed with its key but without a provider id: what to do now.

    `key_window` is how long after the row was committed its key is surely still remembered by
    the provider (YooKassa keeps keys about 24 h from their first use, which is later than the
    commit); `grace` is how long the producer's own call may take. Without the request stored
    with the row (`has_request`) the same body cannot be sent again: the payment waits out the
    window (the producer may still repeat it) and is then canceled uncalled.
    """
    age = now - created_at
    if key_expired(created_at, now, key_window):
        return UnsentDecision(UnsentAction.EXPIRE)
    if not has_request:
        return UnsentDecision(UnsentAction.WAIT, created_at + key_window)
    if age < grace:
        return UnsentDecision(UnsentAction.WAIT, created_at + grace)
    return UnsentDecision(UnsentAction.RESEND)


class CreateVerdict(enum.Enum):
    #: The provider answered with the payment under this key: record its id, follow it.
    RECORD = "record"
    #: No usable answer (network, 5xx, 429): the outcome is unknown, repeat later, same key.
    RETRY = "retry"
    #: The provider refused the request (4xx): no payment exists under this key to follow.
    REFUSED = "refused"
    #: The provider refused our credentials (401): a configuration fault, not the payment's.
    BAD_CREDENTIALS = "bad_credentials"


@dataclass(frozen=True)
class CreateResult:
    verdict: CreateVerdict
    charge: ChargeResult
    #: REFUSED: the provider's error, for cancellation_reason and last_error.
    reason: str | None = None


def refusal_detail(http_status: int | None, body: Mapping[str, Any] | None) -> str:
    """The provider's words for a refused request, `code: description`, for last_error."""
    code = (body or {}).get("code")
    code = code if isinstance(code, str) else f"http_{http_status}"
    description = (body or {}).get("description")
    return f"{code}: {description}" if isinstance(description, str) else code


def credentials_refused(http_status: int | None) -> bool:
    """401: YooKassa refuses the shop's credentials. A configuration fault, not the payment's:
    nothing was made under the key, so it is neither a decline nor a refusal."""
    return http_status == 401


def classify_create(http_status: int | None, body: Mapping[str, Any] | None) -> CreateResult:
    """Classify the answer to a checkout's create request, first (API, bot) or repeated
    (payment_monitor): one rule for what is recorded, retried or canceled."""
    charge = classify_response(http_status, body)
    if credentials_refused(http_status):
        return CreateResult(CreateVerdict.BAD_CREDENTIALS, charge)
    if charge.outcome is ChargeOutcome.REJECTED:
        return CreateResult(CreateVerdict.REFUSED, charge, refusal_detail(http_status, body))
    if charge.payment_id is not None and http_status is not None and 200 <= http_status < 300:
        # Final or not, and even with a status we do not know: the id is the provider's payment
        # under our key, and the normal polling path finds out the rest.
        return CreateResult(CreateVerdict.RECORD, charge)
    return CreateResult(CreateVerdict.RETRY, charge)


def next_resend_at(
    now: datetime,
    created_at: datetime,
    failed_resends: int,
    *,
    key_window: timedelta,
    retry_after_s: float | None = None,
    schedule: RetrySchedule = PAYMENT_POLL,
) -> datetime:
    """After a repeat with no usable answer: when to repeat again, at the latest when the key
    leaves its window (and the payment is then canceled uncalled)."""
    expires = created_at + key_window
    at = schedule.next_attempt_at(now, failed_resends) or expires
    if retry_after_s is not None:
        at = max(at, now + timedelta(seconds=retry_after_s))
    return min(at, expires)


# --- keys past the provider's window ------------------------------------------------------------

#: cancellation_reason of a payment canceled uncalled because its key left the provider's window.
EXPIRED_KEY_REASON = "idempotence_key_expired"


def key_expired(created_at: datetime, now: datetime, key_window: timedelta) -> bool:
    """Whether the key committed with a row at `created_at` may be forgotten by the provider, so
    that sending it again could create a second payment beside one an earlier call made."""
    return now - created_at >= key_window


def expired_key_note(created_at: datetime, now: datetime, key_window: timedelta) -> str:
    """last_error of a payment canceled because its key expired (the monitor's and the API's)."""
    age_h = (now - created_at).total_seconds() / 3600
    window_h = key_window.total_seconds() / 3600
    return (
        f"not sent again: its Idempotence-Key was committed {age_h:.1f} h ago, past the"
        f" {window_h:g} h the provider surely keeps keys; a repeat could create a second payment"
    )


# --- tracing a provider payment back to its row -------------------------------------------------


@dataclass(frozen=True)
class PaymentReference:
    """The local row a provider payment names in its metadata (the request's, echoed back)."""

    #: payments.id of an API or bot payment (metadata `payment_row`).
    payment_row: int | None = None
    #: Idempotence-Key of a recurrent_payments charge (metadata subscription_id, period,
    #: attempt), which is also its payments.idempotence_key.
    charge_key: str | None = None


def _positive_int(value: Any) -> int | None:
    text = str(value) if isinstance(value, int | str) else ""
    return int(text) if text.isdigit() and int(text) > 0 else None


def payment_reference(payment: Mapping[str, Any]) -> PaymentReference | None:
    """Where a payment fetched from the provider points here; None when it names nothing.

    Only for a payment fetched with the shop's credentials (never a webhook body): its metadata
    is then what our own request sent.
    """
    metadata = payment.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    row = _positive_int(metadata.get("payment_row"))
    if row is not None:
        return PaymentReference(payment_row=row)
    subscription = _positive_int(metadata.get("subscription_id"))
    attempt = _positive_int(metadata.get("attempt"))
    period = metadata.get("period")
    if subscription and attempt and isinstance(period, str) and period:
        return PaymentReference(charge_key=charge_key(subscription, period, attempt))
    return None


def reference_mismatch(row: Mapping[str, Any], payment: Mapping[str, Any]) -> str | None:
    """Why the provider payment is not the one committed as `row`; None when it is.

    A `payment_row` alone could be another database's row (a staging copy sharing the shop), so
    the amount must agree and so must the metadata of the request committed with the row (or,
    for rows from before requests were stored, the member's telegram id).
    """
    amount = payment.get("amount")
    currency = amount.get("currency") if isinstance(amount, Mapping) else None
    if amount_minor(amount) != row["amount_minor"] or currency != row["currency"]:
        return f"amount {amount} is not the row's {row['amount_minor']} minor {row['currency']}"
    sent = payment.get("metadata") or {}
    request = stored_request(row)
    if request is not None:
        if request.get("metadata") != sent:
            return "metadata is not the one of the request committed with the row"
        return None
    local = row.get("metadata")
    member = local.get("telegram_id") if isinstance(local, Mapping) else None
    if member is not None and str(member) != sent.get("telegram_id"):
        return "telegram_id is not the row's member"
    return None
