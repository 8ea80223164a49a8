"""Decisions for first payments committed with their key whose create call never returned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitors.decisions.yookassa import (
    ChargeOutcome,
    ResendVerdict,
    UnsentAction,
    classify_resend,
    decide_unsent_payment,
    next_resend_at,
    stored_request,
)

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
        (200, PENDING, ResendVerdict.RECORD, ChargeOutcome.PENDING),
        (200, {"id": "p-ok", "status": "succeeded"}, ResendVerdict.RECORD, ChargeOutcome.SUCCEEDED),
        (200, {"id": "p-no", "status": "canceled"}, ResendVerdict.RECORD, ChargeOutcome.CANCELED),
        # An id with a status we do not know: still the provider's payment under our key.
        (200, {"id": "p-odd", "status": "odd"}, ResendVerdict.RECORD, ChargeOutcome.UNKNOWN),
        (200, {"status": "pending"}, ResendVerdict.RETRY, ChargeOutcome.PENDING),
        (None, None, ResendVerdict.RETRY, ChargeOutcome.UNKNOWN),
        (500, {"type": "error", "code": "internal_server_error"}, ResendVerdict.RETRY, None),
        (429, {"type": "error", "code": "too_many_requests"}, ResendVerdict.RETRY, None),
        (401, {"code": "invalid_credentials"}, ResendVerdict.BAD_CREDENTIALS, None),
        (400, {"type": "error", "code": "invalid_request"}, ResendVerdict.REFUSED, None),
        (403, {"type": "error", "code": "forbidden"}, ResendVerdict.REFUSED, None),
    ],
)
def test_classify_resend(status, body, verdict, outcome):
    result = classify_resend(status, body)
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
    result = classify_resend(400, body)
    assert result.reason == "invalid_request: Idempotence key duplicated"
    assert classify_resend(403, {}).reason == "http_403"


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
