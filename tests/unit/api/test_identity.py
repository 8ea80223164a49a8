"""The identity checks and their settings, without a server."""

from __future__ import annotations

import hashlib

import pytest

from runtime.config import Secret
from runtime.errors import ConfigError
from runtime.telegram_proof import mini_app_authorization, sign_login
from services.api.identity import Caller, IdentityVerifier, Unauthorized, verified_mini_app
from services.api.settings import ApiSettings

TOKEN = "42:unit-test-bot-token-abcdefghijklmnopqrstuv"
NOW = 1_800_000_000.0
KEY = "a-partner-key"


def verifier(max_age_s: int = 3600, token: str | None = TOKEN) -> IdentityVerifier:
    partners = {hashlib.sha256(KEY.encode()).hexdigest(): "landing"}
    return IdentityVerifier(Secret(token) if token else None, partners, max_age_s)


@pytest.mark.parametrize(
    ("age_s", "accepted"), [(0, True), (3600, True), (3601, False), (-60, True), (-61, False)]
)
def test_auth_date_freshness(age_s: int, accepted: bool) -> None:
    header = mini_app_authorization(TOKEN, 7, auth_date=int(NOW - age_s))
    if accepted:
        assert verifier().identify(header, None, NOW) == Caller(telegram_id=7)
    else:
        with pytest.raises(Unauthorized):
            verifier().identify(header, None, NOW)


def test_login_widget_and_partner_key() -> None:
    login = "tglogin " + sign_login(TOKEN, 9, auth_date=int(NOW), first_name="Vera")
    assert verifier().identify(login, None, NOW) == Caller(telegram_id=9)
    partner = verifier().identify(None, KEY, NOW)
    assert partner == Caller(partner="landing")
    assert partner.may_act_for(12345)
    assert not Caller(telegram_id=9).may_act_for(10)


@pytest.mark.parametrize(
    ("authorization", "partner_key"),
    [
        (None, None),
        ("tma " + "x" * 5000, None),
        ("tglogin id=1&auth_date=1800000000&token=x&hash=00", None),
        ("tglogin not a query string", None),
        ("tma auth_date=1800000000&hash=00", None),
        (mini_app_authorization(TOKEN, 7, auth_date=int(NOW)), KEY),
    ],
)
def test_refusals(authorization: str | None, partner_key: str | None) -> None:
    with pytest.raises(Unauthorized) as refused:
        verifier().identify(authorization, partner_key, NOW)
    assert refused.value.status == 401


def test_without_a_bot_token_only_partner_keys_work() -> None:
    header = mini_app_authorization(TOKEN, 7, auth_date=int(NOW))
    with pytest.raises(Unauthorized, match="TELEGRAM_BOT_TOKEN"):
        verifier(token=None).identify(header, None, NOW)
    assert verifier(token=None).identify(None, KEY, NOW).partner == "landing"


def test_settings_name_the_variable() -> None:
    base = {"PAYMENT_RETURN_URL": "https://t.me/bot"}
    assert ApiSettings.from_env(base).return_url_hosts == ("t.me",)
    hosts = ApiSettings.from_env({**base, "PAYMENT_RETURN_URL_HOSTS": "T.me, pay.example.org"})
    assert hosts.return_url_hosts == ("t.me", "pay.example.org")
    for name, value in (
        ("API_PARTNER_KEYS", "landing:not-a-hash"),
        ("PAYMENT_RETURN_URL_HOSTS", "evil.example/path"),
        ("API_RATE_LIMIT_MEMBER", "lots"),
    ):
        with pytest.raises(ConfigError) as error:
            ApiSettings.from_env({**base, name: value})
        assert error.value.variable == name


def test_a_remembered_proof_is_still_checked_for_freshness() -> None:
    header = mini_app_authorization(TOKEN, 8, auth_date=int(NOW))
    before = verified_mini_app.cache_info().hits
    assert verifier().identify(header, None, NOW).telegram_id == 8
    assert verifier().identify(header, None, NOW + 10).telegram_id == 8
    assert verified_mini_app.cache_info().hits == before + 1
    with pytest.raises(Unauthorized, match="expired"):
        verifier().identify(header, None, NOW + 3601)
    # Another bot's token never reuses the verdict.
    with pytest.raises(Unauthorized):
        verifier(token="43:another-bot-token-abcdefghijklmnopqrs").identify(header, None, NOW)
