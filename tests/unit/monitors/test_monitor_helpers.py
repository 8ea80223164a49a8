from __future__ import annotations

from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from monitors.metrics import UNSENT_OUTCOMES, UNSENT_PAYMENTS
from monitors.notifymonitor import NotifySettings
from monitors.parse_messages import ParseSettings, area_dm2, commission_bp, normalized_complex
from monitors.tsmonitor import TermSettings
from runtime.config import Settings
from runtime.errors import ConfigError
from runtime.metrics import start_at_zero


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("Солнечный", "солнечный"),
        ("ЖК «Цветочные  поляны»", "цветочные поляны"),
        ('"Ёлки Парк"', "елки парк"),
    ],
)
def test_complex_identity(name, normalized):
    assert normalized_complex(name) == normalized


@pytest.mark.parametrize(
    ("area", "dm2"), [(Decimal("54.3"), 5430), (Decimal("35.55"), 3555), (None, None)]
)
def test_area_in_dm2(area, dm2):
    assert area_dm2(area) == dm2


@pytest.mark.parametrize(
    ("percent", "bp"), [(Decimal("2.5"), 250), (Decimal(3), 300), (Decimal("1.25"), 125)]
)
def test_commission_in_basis_points(percent, bp):
    assert commission_bp(percent) == bp


def test_listing_sources_by_id_or_username():
    config = ParseSettings.from_env(
        {"NMARKET_CHATS": "-100123, @NMarket_Channel", "TRADEAGENT_CHATS": "@tradeagent"},
        Settings.from_env({"DOMOS_DATA_DIR": "/data"}),
    )
    assert config.listing_source(-100123, None) == "nmarket"
    assert config.listing_source(-5, "nmarket_channel") == "nmarket"
    assert config.listing_source(-6, "TradeAgent") == "tradeagent"
    assert config.listing_source(-7, "other") is None
    assert config.audio_dir == Path("/data/audio")


def test_term_settings_from_env():
    config = TermSettings.from_env(
        {"TS_REMINDER_DAYS": "1,7", "TS_REMINDER_AT": "09:30"}, Settings.from_env({})
    )
    assert config.reminder_days == (7, 1)
    assert config.reminder_at == time(9, 30)
    assert config.grace_days == 3


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"TS_REMINDER_DAYS": "7,x"}, "TS_REMINDER_DAYS"),
        ({"TS_REMINDER_AT": "late"}, "TS_REMINDER_AT"),
    ],
)
def test_term_settings_name_the_bad_variable(environ, variable):
    with pytest.raises(ConfigError) as error:
        TermSettings.from_env(environ, Settings.from_env({}))
    assert error.value.variable == variable


@pytest.mark.parametrize(
    ("environ", "burst"),
    [
        ({}, 3),
        ({"NOTIFY_GLOBAL_PER_S": "2.5"}, 2),  # a replica's share: never above a second's sends
        ({"NOTIFY_GLOBAL_PER_S": "0.5"}, 1),
        ({"NOTIFY_GLOBAL_BURST": "1"}, 1),
        ({"NOTIFY_GLOBAL_BURST": "10"}, 10),
    ],
)
def test_notify_global_burst_defaults_within_one_second_of_sends(environ, burst):
    assert NotifySettings.from_env(environ, Settings.from_env({})).limits.global_burst == burst


def test_notify_global_burst_above_one_second_of_sends_is_refused():
    with pytest.raises(ConfigError, match="NOTIFY_GLOBAL_BURST"):
        NotifySettings.from_env(
            {"NOTIFY_GLOBAL_PER_S": "15", "NOTIFY_GLOBAL_BURST": "16"}, Settings.from_env({})
        )


def test_rare_outcomes_are_exported_at_zero_before_their_first_increment():
    registry = CollectorRegistry()
    counter = Counter("domos_test_unsent_total", "test", ["outcome"], registry=registry)
    assert registry.get_sample_value("domos_test_unsent_total", {"outcome": "expired"}) is None

    start_at_zero(counter, "outcome", UNSENT_OUTCOMES)

    for outcome in UNSENT_OUTCOMES:
        assert registry.get_sample_value("domos_test_unsent_total", {"outcome": outcome}) == 0
    # Every outcome payment_monitor counts is among them (its help text names each).
    assert all(outcome in UNSENT_PAYMENTS._documentation for outcome in UNSENT_OUTCOMES)
