"""Pure parts of the API: token hashing and states, payment keys, settings, credentials."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from payments.amounts import amount_value
from runtime.config import Secret
from runtime.errors import ConfigError
from services.api.models import PaymentCreate, TokenIssue
from services.api.payments import stored_key
from services.api.settings import ApiSettings
from services.api.tokens import TokenHasher, generate_token, token_state, uses_left
from services.common.credentials import bearer_token, secret_matches

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def row(**fields: Any) -> dict[str, Any]:
    base = {"revoked_at": None, "expires_at": None, "max_uses": None, "use_count": 0}
    return {**base, **fields}


def test_tokens_are_random_and_prefixed() -> None:
    tokens = {generate_token("advert") for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith("adv_") and len(t) >= 40 for t in tokens)
    assert generate_token("contract").startswith("ctr_")


def test_hash_is_hmac_with_the_server_key_else_sha256() -> None:
    keyed = TokenHasher(Secret("k")).hash("tok")
    assert keyed == hmac.new(b"k", b"tok", hashlib.sha256).hexdigest()
    assert TokenHasher(None).hash("tok") == hashlib.sha256(b"tok").hexdigest()
    assert TokenHasher(Secret("other")).hash("tok") != keyed


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({}, "valid"),
        ({"revoked_at": NOW - timedelta(days=1)}, "revoked"),
        ({"expires_at": NOW}, "expired"),
        ({"expires_at": NOW + timedelta(seconds=1)}, "valid"),
        ({"max_uses": 2, "use_count": 2}, "exhausted"),
        ({"max_uses": 2, "use_count": 1}, "valid"),
        # revocation wins over every other reason
        ({"revoked_at": NOW, "expires_at": NOW, "max_uses": 1, "use_count": 1}, "revoked"),
    ],
)
def test_token_state(fields: dict[str, Any], state: str) -> None:
    assert token_state(row(**fields), NOW) == state


def test_uses_left() -> None:
    assert uses_left(row()) is None
    assert uses_left(row(max_uses=5, use_count=2)) == 3


def test_stored_payment_key_is_per_member_and_fits_yookassa() -> None:
    key = stored_key(1, "order-1")
    assert key == stored_key(1, "order-1")
    assert key != stored_key(2, "order-1")
    assert key != stored_key(1, "order-2")
    assert len(key) <= 64


@pytest.mark.parametrize(
    ("minor", "value"), [(99000, "990.00"), (123450, "1234.50"), (1, "0.01"), (100, "1.00")]
)
def test_amount_value(minor: int, value: str) -> None:
    assert amount_value(minor) == value


def test_models_refuse_text_the_databases_cannot_store() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        PaymentCreate(telegram_id=1, tariff_code="a\x00")
    with pytest.raises(ValidationError):
        PaymentCreate(telegram_id=2**64, tariff_code="a")
    with pytest.raises(ValidationError, match="range"):
        TokenIssue.model_validate(
            {"issued_to": "a", "scope": "b", "expires_at": "9999-12-31T23:59:59-05:00"}
        )
    issued = TokenIssue.model_validate(
        {"issued_to": "a", "scope": "b", "expires_at": "2030-01-01T03:00:00+03:00"}
    )
    assert issued.expires_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_settings_from_env() -> None:
    settings = ApiSettings.from_env({"API_ADMIN_KEY": "s3cr3t-adm1n", "API_PORT": "9001"})
    assert settings.admin_key == Secret("s3cr3t-adm1n")
    assert settings.token_hash_key is None
    assert settings.port == 9001
    assert "s3cr3t-adm1n" not in repr(settings)
    # payment_monitor's variable: both stop repeating a key at the same age.
    assert settings.payment_key_window == timedelta(hours=23)
    assert ApiSettings.from_env({"PAYMENT_KEY_WINDOW_H": "12"}).payment_key_window == timedelta(
        hours=12
    )
    with pytest.raises(ConfigError, match="PAYMENT_RETURN_URL"):
        ApiSettings.from_env({"PAYMENT_RETURN_URL": "ftp://x"})
    with pytest.raises(ConfigError, match="PAYMENT_KEY_WINDOW_H"):
        ApiSettings.from_env({"PAYMENT_KEY_WINDOW_H": "0"})


def test_credentials() -> None:
    assert secret_matches("abc", Secret("abc"))
    assert not secret_matches("abd", Secret("abc"))
    assert not secret_matches(None, Secret("abc"))
    assert not secret_matches("abc", None)
    assert bearer_token("Bearer  tok ") == "tok"
    assert bearer_token("bearer tok") == "tok"
    assert bearer_token("Basic tok") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None
