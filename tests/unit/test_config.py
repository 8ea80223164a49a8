from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from runtime.config import Secret, Settings, mask_url_password
from runtime.errors import ConfigError


def test_defaults_are_the_embedded_sqlite_setup(tmp_path):
    settings = Settings.from_env({"DOMOS_DATA_DIR": str(tmp_path)})
    assert settings.db.type == "sqlite"
    assert settings.db.sqlite_path("main") == tmp_path / "bot/tgbot/databases/data.db"
    assert settings.db.sqlite_path("advert") == tmp_path / "api/advert_tokens.db"
    assert settings.db.sqlite_path("django") == tmp_path / "web/db.sqlite3"
    assert settings.timezone == ZoneInfo("Europe/Moscow")
    assert settings.telegram.api_url == "https://api.telegram.org"
    assert settings.metrics_port is None


def test_legacy_path_variables_override_each_file(tmp_path):
    settings = Settings.from_env(
        {"DOMOS_DATA_DIR": str(tmp_path), "MAIN_DB_PATH": "/srv/data.db", "NMARKET_DB_PATH": "n.db"}
    )
    assert str(settings.db.sqlite_path("main")) == "/srv/data.db"
    assert settings.db.sqlite_path("nmarket") == tmp_path / "n.db"


def test_postgres_url_from_parts_quotes_the_password():
    settings = Settings.from_env(
        {"DB_TYPE": "postgres", "POSTGRES_HOST": "db", "POSTGRES_PASSWORD": "p@ss:w/rd"}
    )
    assert (
        settings.db.require_postgres_url() == "postgresql://postgres:p%40ss%3Aw%2Frd@db:5432/domos"
    )


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"DB_TYPE": "mysql"}, "DB_TYPE"),
        ({"DB_TYPE": "postgres"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"METRICS_PORT": "http"}, "METRICS_PORT"),
        ({"METRICS_PORT": "70000"}, "METRICS_PORT"),
        ({"TELEGRAM_API_URL": "localhost:8081"}, "TELEGRAM_API_URL"),
        ({"DOMOS_TIMEZONE": "Mars/Olympus"}, "DOMOS_TIMEZONE"),
        ({"DB_POOL_MIN_SIZE": "5", "DB_POOL_MAX_SIZE": "2"}, "DB_POOL_MAX_SIZE"),
    ],
)
def test_invalid_values_name_their_variable(environ, variable):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environ)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_required_secrets_name_their_variable():
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        settings.telegram.require_token()
    with pytest.raises(ConfigError, match="YOOKASSA_SHOP_ID"):
        settings.yookassa.require_credentials()


def test_secrets_never_appear_in_repr_or_errors():
    environ = {
        "DB_TYPE": "postgres",
        "DATABASE_URL": "postgresql://u:hunter2@db/domos",
        "TELEGRAM_BOT_TOKEN": "123:token-value",
        "YOOKASSA_SHOP_ID": "shop",
        "YOOKASSA_SECRET_KEY": "live_secret",
    }
    text = repr(Settings.from_env(environ)) + str(Settings.from_env(environ))
    for secret in ("hunter2", "token-value", "live_secret"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "hunter2" not in str(info.value)
    assert Secret("a") == Secret("a")
    assert f"{Secret('a')}" == "Secret('**********')"


def test_mask_url_password():
    assert mask_url_password("postgresql://u:pw@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert mask_url_password("postgresql://u@h/d") == "postgresql://u@h/d"
