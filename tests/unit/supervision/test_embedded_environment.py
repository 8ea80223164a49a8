from __future__ import annotations

from pathlib import Path

from runtime.config import Settings
from runtime.supervision.embedded import embedded_environment


def test_without_tokens_the_sandbox_stands_in_for_both_providers(tmp_path: Path):
    env = embedded_environment({"PATH": "/usr/bin"}, tmp_path)
    assert env["DOMOS_ROLE"] == "embedded"
    assert env["TELEGRAM_API_URL"] == env["YOOKASSA_API_URL"] == "http://127.0.0.1:8081"
    assert env["DB_TYPE"] == "sqlite"
    assert env["DOMOS_HOME"] == str(tmp_path)
    settings = Settings.from_env(env)
    assert settings.db.data_dir == tmp_path / "var" / "data"
    assert settings.telegram.require_token().split(":")[0].isdigit()
    assert settings.yookassa.require_credentials()[0] == env["YOOKASSA_SHOP_ID"]
    # The interpreter's scripts (domos, supervisord) come first on PATH.
    assert env["PATH"].endswith(":/usr/bin")


def test_real_tokens_leave_the_sandbox_out_and_operator_values_win(tmp_path: Path):
    env = embedded_environment(
        {
            "TELEGRAM_BOT_TOKEN": "42:real",
            "TELEGRAM_API_URL": "https://api.telegram.org",
            "SANDBOX_PORT": "9999",
            "DB_TYPE": "postgres",
        },
        tmp_path,
    )
    assert env["DOMOS_ROLE"] == "all"
    assert env["TELEGRAM_BOT_TOKEN"] == "42:real"
    assert env["TELEGRAM_API_URL"] == "https://api.telegram.org"
    assert env["DB_TYPE"] == "postgres"
    assert "YOOKASSA_API_URL" not in env


def test_sandbox_port_moves_both_provider_urls(tmp_path: Path):
    env = embedded_environment({"SANDBOX_PORT": "18081"}, tmp_path)
    assert env["TELEGRAM_API_URL"] == "http://127.0.0.1:18081"
    assert env["YOOKASSA_API_URL"] == "http://127.0.0.1:18081"


def test_generated_secrets_are_kept_between_runs_and_private(tmp_path: Path):
    first = embedded_environment({}, tmp_path)
    second = embedded_environment({}, tmp_path)
    for name in ("API_ADMIN_KEY", "API_TOKEN_HASH_KEY", "BOTAPI_SEND_TOKEN"):
        assert len(first[name]) >= 32
        assert first[name] == second[name]
    assert (tmp_path / "var" / "embedded-secrets.json").stat().st_mode & 0o777 == 0o600
    assert embedded_environment({"API_ADMIN_KEY": "mine"}, tmp_path)["API_ADMIN_KEY"] == "mine"
