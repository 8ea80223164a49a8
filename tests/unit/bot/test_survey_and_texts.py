"""Pure parts of the bot: the survey state machine, callback data, amounts and status texts."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from monitors import texts
from payments.amounts import amount_value
from payments.requests import checkout_request
from services.bot import survey

MSK = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(
    ("answered", "expected"),
    [
        (set(), 0),
        ({"deals"}, 1),
        ({"satisfaction"}, 0),
        ({"deals", "satisfaction"}, 2),
        ({"deals", "satisfaction", "suggestion"}, None),
    ],
)
def test_next_question_is_the_first_unanswered(answered: set[str], expected: int | None) -> None:
    assert survey.next_question(answered) == expected


def test_answer_callback_round_trip_and_rejects_garbage() -> None:
    data = survey.answer_callback(42, 1, 3)
    assert len(data.encode()) <= 64  # Telegram's limit for callback_data
    assert survey.parse_answer_callback(data) == (42, 1, 3)
    for bad in ("survey:open", "survey:1:2", "survey:a:1:2", "event:1:2:3", ""):
        assert survey.parse_answer_callback(bad) is None


def test_survey_month_is_the_local_month() -> None:
    # 22:30 UTC on 31 January is already February in Moscow.
    assert survey.survey_month(datetime(2025, 1, 31, 22, 30, tzinfo=UTC), MSK) == "2025-02"
    assert survey.survey_month(datetime(2025, 1, 31, 20, 0, tzinfo=UTC), MSK) == "2025-01"


@pytest.mark.parametrize(
    ("minor", "value"), [(150000, "1500.00"), (99, "0.99"), (100001, "1000.01")]
)
def test_amount_value(minor: int, value: str) -> None:
    assert amount_value(minor) == value


def test_payment_body_carries_the_row_and_saves_the_method() -> None:
    body = checkout_request(
        {
            "id": 7,
            "amount_minor": 150000,
            "currency": "RUB",
            "save_payment_method": 1,
            "description": "Подписка",
            "metadata": {"telegram_id": 5, "tariff_id": 2},
        },
        "https://t.me/bot",
    )
    assert body["amount"] == {"value": "1500.00", "currency": "RUB"}
    assert body["confirmation"] == {"type": "redirect", "return_url": "https://t.me/bot"}
    assert body["save_payment_method"] is True
    assert body["metadata"] == {"payment_row": "7", "telegram_id": "5", "tariff_id": "2"}


def test_subscription_status_texts() -> None:
    end = datetime(2025, 3, 31, 21, 0, tzinfo=UTC)  # 1 April 00:00 in Moscow
    active = {
        "status": "active",
        "tariff_title": "Месяц",
        "current_period_end": end,
        "auto_renew": True,
        "grace_until": None,
    }
    assert "активна до 01.04.2025" in texts.subscription_status(active, MSK)
    assert "включено" in texts.subscription_status(active, MSK)
    grace = {**active, "status": "grace", "grace_until": datetime(2025, 4, 4, tzinfo=UTC)}
    assert "до 04.04.2025" in texts.subscription_status(grace, MSK)
    assert texts.subscription_status(None, MSK) == texts.NO_SUBSCRIPTION
    assert "/subscribe" in texts.subscription_status({**active, "status": "expired"}, MSK)


def test_help_lists_every_command() -> None:
    for command, _ in texts.COMMANDS:
        assert f"/{command}" in texts.HELP


def test_the_api_and_the_bot_describe_a_payment_alike() -> None:
    import ast
    from pathlib import Path

    # Both build the provider's description with the one function (they differed before).
    root = Path(__file__).resolve().parents[3]
    for module in ("services/api/payments.py", "services/bot/payments.py"):
        tree = ast.parse((root / module).read_text())
        calls = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.keyword) and node.arg == "description"
        ]
        assert calls, module
        for keyword in calls:
            assert ast.unparse(keyword.value).startswith("texts.payment_description("), module
    assert texts.payment_description("Месяц", 30) == "Подписка «Месяц» на 30 дн."
