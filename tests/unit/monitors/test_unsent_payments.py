"""Decisions for payments committed with their key whose create call never returned, for
polling open payments, and for tracing a provider payment back to its row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitors.decisions.periods import Period, charge_idempotence_key
from payments.decisions import (
    ChargeOutcome,
    CreateVerdict,
    PaymentReference,
    UnsentAction,
    classify_create,
    decide_unsent_payment,
    expired_key_note,
    key_expired,
    next_poll_at,
    next_resend_at,
    payment_reference,
    poll_overdue,
    reference_mismatch,
    stored_request,
)
from payments.schedules import PAYMENT_POLL

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=2)
WINDOW = timedelta(hours=23)


@pytest.mark.parametrize(
    ("age", "has_request", "action", "not_before"),
    [
        # The producer's own call may still be under way: look again when the grace is over.
        (timedelta(seconds=30), True, UnsentAction.WAIT, timedelta(minutes=2)),
        (timedelta(minutes=2), True, UnsentAction.RESEND, None),
        (timedelta(hours=22, minutes=59), True, UnsentAction.RESEND, None),
        # The provider may have forgotten the key: a repeat could be a second payment.
        (timedelta(hours=23), True, UnsentAction.EXPIRE, None),
        (timedelta(days=3), True, UnsentAction.EXPIRE, None),
        # Without the request it was made with, the same body cannot be sent: wait out the key.
        (timedelta(minutes=5), False, UnsentAction.WAIT, timedelta(hours=23)),
        (timedelta(hours=23), False, UnsentAction.EXPIRE, None),
    ],
)
def test_decide_unsent_payment(age, has_request, action, not_before):
    created = NOW - age
    decision = decide_unsent_payment(
        created, NOW, grace=GRACE, key_window=WINDOW, has_request=has_request
    )
    assert decision.action is action
    assert decision.not_before == (created + not_before if not_before else None)


PENDING = {"id": "2f1a-pending", "status": "pending", "confirmation": {}}


@pytest.mark.parametrize(
    ("status", "body", "verdict", "outcome"),
    [
        (200, PENDING, CreateVerdict.RECORD, ChargeOutcome.PENDING),
        (200, {"id": "p-ok", "status": "succeeded"}, CreateVerdict.RECORD, ChargeOutcome.SUCCEEDED),
        (200, {"id": "p-no", "status": "canceled"}, CreateVerdict.RECORD, ChargeOutcome.CANCELED),
        # An id with a status we do not know: still the provider's payment under our key.
        (200, {"id": "p-odd", "status": "odd"}, CreateVerdict.RECORD, ChargeOutcome.UNKNOWN),
        (200, {"status": "pending"}, CreateVerdict.RETRY, ChargeOutcome.PENDING),
        (None, None, CreateVerdict.RETRY, ChargeOutcome.UNKNOWN),
        (500, {"type": "error", "code": "internal_server_error"}, CreateVerdict.RETRY, None),
        (429, {"type": "error", "code": "too_many_requests"}, CreateVerdict.RETRY, None),
        (401, {"code": "invalid_credentials"}, CreateVerdict.BAD_CREDENTIALS, None),
        (400, {"type": "error", "code": "invalid_request"}, CreateVerdict.REFUSED, None),
        (403, {"type": "error", "code": "forbidden"}, CreateVerdict.REFUSED, None),
    ],
)
def test_classify_create(status, body, verdict, outcome):
    result = classify_create(status, body)
    assert result.verdict is verdict
    if outcome is not None:
        assert result.charge.outcome is outcome


def test_a_refusal_names_the_providers_error():
    body = {
        "type": "error",
        "code": "invalid_request",
        "description": "Idempotence key duplicated",
        "parameter": "Idempotence-Key",
    }
    result = classify_create(400, body)
    assert result.reason == "invalid_request: Idempotence key duplicated"
    assert classify_create(403, {}).reason == "http_403"


def test_next_resend_backs_off_and_never_past_the_key_window():
    created = NOW - timedelta(minutes=5)
    assert next_resend_at(NOW, created, 1, key_window=WINDOW) == NOW + timedelta(minutes=1)
    assert next_resend_at(NOW, created, 3, key_window=WINDOW) == NOW + timedelta(minutes=4)
    # A 429 asks for longer than the schedule would wait.
    assert next_resend_at(NOW, created, 1, key_window=WINDOW, retry_after_s=300) == NOW + timedelta(
        minutes=5
    )
    # Near the end of the window the next look is its end, where the payment expires.
    late = NOW - (WINDOW - timedelta(minutes=10))
    assert next_resend_at(NOW, late, 8, key_window=WINDOW) == late + WINDOW
    assert next_resend_at(NOW, late, 99, key_window=WINDOW) == late + WINDOW


@pytest.mark.parametrize(
    ("metadata", "found"),
    [
        ({"provider_request": {"amount": {"value": "1.00"}}}, {"amount": {"value": "1.00"}}),
        ({"source": "bot"}, None),
        ({"provider_request": "not a body"}, None),
        (None, None),
    ],
)
def test_stored_request(metadata, found):
    assert stored_request({"metadata": metadata}) == found


def test_a_key_expires_at_its_window_and_the_note_says_why():
    created = NOW - WINDOW
    assert key_expired(created, NOW, WINDOW)
    assert not key_expired(created + timedelta(seconds=1), NOW, WINDOW)
    note = expired_key_note(NOW - timedelta(hours=25, minutes=30), NOW, WINDOW)
    assert "committed 25.5 h ago, past the 23 h" in note
    assert note.endswith("a repeat could create a second payment")


def test_polling_follows_the_schedule_then_keeps_going_at_its_cap():
    assert next_poll_at(NOW, 1) == NOW + timedelta(minutes=1)
    assert next_poll_at(NOW, 3) == NOW + timedelta(minutes=4)
    last = PAYMENT_POLL.max_attempts
    assert not poll_overdue(last - 1)
    # Past the schedule the payment is still looked at, hourly, until it is final.
    assert poll_overdue(last)
    assert next_poll_at(NOW, last) == NOW + timedelta(hours=1)
    assert next_poll_at(NOW, 10 * last) == NOW + timedelta(hours=1)


SUB_PERIOD = Period(datetime(2025, 3, 1, 7, 0, tzinfo=UTC), datetime(2025, 3, 31, 7, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("metadata", "reference"),
    [
        # The API's and the bot's requests name their row.
        ({"payment_row": "17", "telegram_id": "700"}, PaymentReference(payment_row=17)),
        ({"payment_row": "17", "source": "bot", "tariff_id": "2"}, PaymentReference(17)),
        # recurrent_payments' charges name their attempt: its key is derived from them.
        (
            {"subscription_id": "5", "period": SUB_PERIOD.key, "attempt": "2"},
            PaymentReference(charge_key=charge_idempotence_key(5, SUB_PERIOD, 2)),
        ),
        ({"subscription_id": "5", "period": SUB_PERIOD.key}, None),
        ({"payment_row": "0"}, None),
        ({"payment_row": "-3"}, None),
        ({"payment_row": "17x"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_payment_reference(metadata, reference):
    assert payment_reference({"id": "p", "metadata": metadata}) == reference


ROW = {
    "amount_minor": 99000,
    "currency": "RUB",
    "metadata": {
        "source": "api",
        "telegram_id": 700,
        "provider_request": {"metadata": {"payment_row": "17", "telegram_id": "700"}},
    },
}
FETCHED = {
    "amount": {"value": "990.00", "currency": "RUB"},
    "metadata": {"payment_row": "17", "telegram_id": "700"},
}


@pytest.mark.parametrize(
    ("row", "fetched", "problem"),
    [
        (ROW, FETCHED, None),
        (ROW, {**FETCHED, "amount": {"value": "990", "currency": "RUB"}}, None),
        (ROW, {**FETCHED, "amount": {"value": "99.00", "currency": "RUB"}}, "amount"),
        (ROW, {**FETCHED, "amount": {"value": "990.00", "currency": "USD"}}, "amount"),
        (ROW, {**FETCHED, "amount": {"value": "Infinity", "currency": "RUB"}}, "amount"),
        (ROW, {**FETCHED, "amount": None}, "amount"),
        # Another database's row 17 (a staging copy sharing the shop) sent other metadata.
        (ROW, {**FETCHED, "metadata": {"payment_row": "17", "telegram_id": "9"}}, "metadata"),
        # Rows from before requests were stored: the member must still be the row's.
        ({**ROW, "metadata": {"telegram_id": 700}}, FETCHED, None),
        ({**ROW, "metadata": {"telegram_id": 9}}, FETCHED, "telegram_id"),
        ({**ROW, "metadata": None}, FETCHED, None),
    ],
)
def test_reference_mismatch(row, fetched, problem):
    found = reference_mismatch(row, fetched)
    assert (found is None) == (problem is None), found
    if problem is not None:
        assert problem in found
