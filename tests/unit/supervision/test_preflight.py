"""`domos supervisor check`: the role's settings refused before supervisord starts."""

from __future__ import annotations

import pytest

from runtime.cli import main
from runtime.errors import EX_CONFIG
from runtime.supervision.preflight import check_role, program_check
from runtime.supervision.programs import by_name

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_preflight_names_every_bad_variable_of_the_role():
    environ = {"TS_REMINDER_AT": "25:99", "ANKET_SEND_AT": "noon"}
    problems = check_role("monitors", environ)
    assert any(p.startswith("tsmonitor: TS_REMINDER_AT:") for p in problems), problems
    assert any(p.startswith("monthly_anket: ANKET_SEND_AT:") for p in problems), problems
    assert check_role("monitors", {}) == []


def test_preflight_stops_at_the_settings_every_program_reads():
    assert check_role("bot", {"DOMOS_TIMEZONE": "Mars/Olympus"}) == [
        "DOMOS_TIMEZONE: unknown time zone 'Mars/Olympus'"
    ]


def test_preflight_checks_what_each_program_checks_before_serving():
    assert program_check(by_name()["sandbox"]) is None
    assert program_check(by_name()["web"]) is None  # Django's settings: `domos web` checks them
    assert check_role("api", {}) == ["api: YOOKASSA_SHOP_ID: is required to talk to YooKassa"]


def test_supervisor_check_exits_78(monkeypatch, capsys):
    monkeypatch.setenv("DOMOS_TIMEZONE", "Mars/Olympus")
    assert main(["supervisor", "check", "--role", "monitors"]) == EX_CONFIG
    assert "DOMOS_TIMEZONE" in capsys.readouterr().err
    monkeypatch.delenv("DOMOS_TIMEZONE")
    assert main(["supervisor", "check", "--role", "monitors"]) == 0
    assert main(["supervisor", "check", "--role", "nope"]) == EX_CONFIG
