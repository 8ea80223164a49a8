from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from payments.decisions import (
    ChargeOutcome,
    DeclineAction,
    DeclineKind,
    classify_decline,
    classify_payment_object,
    classify_response,
    decide_after_decline,
)
from payments.schedules import SOFT_DECLINE
from runtime.retry import RetrySchedule

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failed", "expected"),
    [(1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (5, 100.0), (50, 100.0), (10_000, 100.0)],
)
def test_delay_doubles_up_to_the_cap(failed, expected):
    schedule = RetrySchedule(base_s=10, cap_s=100, max_attempts=100)
    assert schedule.delay_s(failed) == expected


def test_jitter_only_shortens_within_its_fraction():
    schedule = RetrySchedule(base_s=10, cap_s=100, max_attempts=5, jitter_fraction=0.2)
    assert schedule.delay_s(1, jitter=0.0) == 10.0
    assert schedule.delay_s(1, jitter=0.5) == pytest.approx(9.0)
    assert schedule.delay_s(1, jitter=0.999) > 8.0


def test_next_attempt_stops_after_max_attempts():
    schedule = RetrySchedule(base_s=60, cap_s=600, max_attempts=3)
    assert schedule.next_attempt_at(NOW, 1) == NOW + timedelta(seconds=60)
    assert schedule.next_attempt_at(NOW, 2) == NOW + timedelta(seconds=120)
    assert schedule.next_attempt_at(NOW, 3) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0, "cap_s": 1, "max_attempts": 1},
        {"base_s": 2, "cap_s": 1, "max_attempts": 1},
        {"base_s": 1, "cap_s": 1, "max_attempts": 0},
        {"base_s": 1, "cap_s": 1, "max_attempts": 1, "jitter_fraction": 1.0},
    ],
)
def test_invalid_schedules_are_refused(kwargs):
    with pytest.raises(ValueError, match=r"must be|need"):
        RetrySchedule(**kwargs)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("insufficient_funds", DeclineKind.SOFT),
        ("issuer_unavailable", DeclineKind.SOFT),
        ("general_decline", DeclineKind.SOFT),
        ("internal_timeout", DeclineKind.SOFT),
        ("call_issuer", DeclineKind.SOFT),
        ("permission_revoked", DeclineKind.HARD),
        ("card_expired", DeclineKind.HARD),
        ("fraud_suspected", DeclineKind.HARD),
        ("invalid_card_number", DeclineKind.HARD),
        ("payment_method_restricted", DeclineKind.HARD),
        ("country_forbidden", DeclineKind.HARD),
        ("3d_secure_failed", DeclineKind.HARD),
        ("something_new", DeclineKind.UNKNOWN),
        (None, DeclineKind.UNKNOWN),
    ],
)
def test_decline_classification(reason, kind):
    assert classify_decline(reason) is kind


@pytest.mark.parametrize(
    ("reason", "failed", "action", "delay_h"),
    [
        ("insufficient_funds", 1, DeclineAction.RETRY_LATER, 6),
        ("insufficient_funds", 2, DeclineAction.RETRY_LATER, 12),
        ("issuer_unavailable", 3, DeclineAction.RETRY_LATER, 24),
        ("insufficient_funds", 4, DeclineAction.RETRY_LATER, 24),
        ("insufficient_funds", 5, DeclineAction.STOP_AUTO_RENEWAL, None),
        ("card_expired", 1, DeclineAction.STOP_AUTO_RENEWAL, None),
        ("permission_revoked", 1, DeclineAction.STOP_AUTO_RENEWAL, None),
        ("brand_new_reason", 1, DeclineAction.RETRY_LATER, 6),
        ("brand_new_reason", 2, DeclineAction.STOP_AUTO_RENEWAL, None),
    ],
)
def test_decision_after_decline(reason, failed, action, delay_h):
    decision = decide_after_decline(reason, failed_attempts=failed, now=NOW, schedule=SOFT_DECLINE)
    assert decision.action is action
    if delay_h is None:
        assert decision.retry_at is None
    else:
        assert decision.retry_at == NOW + timedelta(hours=delay_h)


def test_soft_decline_is_not_retried_past_the_grace_end():
    decision = decide_after_decline(
        "insufficient_funds", failed_attempts=3, now=NOW, retry_until=NOW + timedelta(hours=12)
    )
    assert decision.action is DeclineAction.STOP_AUTO_RENEWAL


@pytest.mark.parametrize(
    ("status", "body", "outcome", "reason"),
    [
        (200, {"id": "p1", "status": "succeeded"}, ChargeOutcome.SUCCEEDED, None),
        (200, {"id": "p1", "status": "pending"}, ChargeOutcome.PENDING, None),
        (200, {"id": "p1", "status": "waiting_for_capture"}, ChargeOutcome.PENDING, None),
        (
            200,
            {
                "id": "p1",
                "status": "canceled",
                "cancellation_details": {"party": "payment_network", "reason": "card_expired"},
            },
            ChargeOutcome.CANCELED,
            "card_expired",
        ),
        (200, {"id": "p1", "status": "weird"}, ChargeOutcome.UNKNOWN, None),
        (500, {"type": "error", "code": "internal_server_error"}, ChargeOutcome.UNKNOWN, None),
        (None, None, ChargeOutcome.UNKNOWN, None),
        (400, {"type": "error", "code": "invalid_request"}, ChargeOutcome.REJECTED, None),
        (401, {"type": "error", "code": "invalid_credentials"}, ChargeOutcome.REJECTED, None),
    ],
)
def test_response_classification(status, body, outcome, reason):
    result = classify_response(status, body)
    assert result.outcome is outcome
    assert result.cancellation_reason == reason


def test_rate_limited_answer_keeps_the_key_and_waits():
    result = classify_response(429, {"code": "too_many_requests"}, retry_after_s=3.0)
    assert result.outcome is ChargeOutcome.UNKNOWN
    assert result.retry_after_s == 3.0


def test_rejection_carries_the_error_code():
    assert classify_response(400, {"code": "invalid_request"}).error_code == "invalid_request"


def test_webhook_object_classifies_like_a_response():
    assert classify_payment_object({"id": "x", "status": "succeeded"}).payment_id == "x"
