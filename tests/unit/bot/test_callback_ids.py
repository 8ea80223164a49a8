"""The one parser of numbers in callback_data (services/bot/callback_ids.py)."""

from __future__ import annotations

import pytest

from services.bot import survey
from services.bot.callback_ids import MAX_ID, parse_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        (str(MAX_ID), MAX_ID),
        (str(MAX_ID + 1), None),
        ("99999999999999999999999", None),
        ("9" * 5000, None),
        ("²", None),
        ("١٢", None),  # Arabic-Indic digits: isdigit() says yes
        ("-1", None),
        ("+1", None),
        (" 1", None),
        ("1.0", None),
        ("", None),
    ],
)
def test_parse_id(raw: str, expected: int | None) -> None:
    assert parse_id(raw) == expected


@pytest.mark.parametrize(
    "data", ["survey:1:²:0", "survey:99999999999999999999:0:0", "survey:1:0:99999999999999999999"]
)
def test_a_tampered_survey_button_is_refused(data: str) -> None:
    assert survey.parse_answer_callback(data) is None
