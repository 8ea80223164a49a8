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


def test_status_report_lists_the_programs_and_where_to_look(tmp_path: Path):
    from runtime.supervision.embedded import status_report

    env = embedded_environment({"PATH": "/usr/bin"}, tmp_path)
    processes = [
        {"name": "api", "group": "api", "statename": "RUNNING"},
        {"name": "tsmonitor", "group": "monitors", "statename": "RUNNING"},
        {"name": "supervisor_exporter", "group": "supervisor_exporter", "statename": "RUNNING"},
    ]
    config = tmp_path / "supervisord.conf"
    report = status_report(processes, env, config, elapsed_s=12.4)
    lines = report.splitlines()
    assert lines[0] == "domos is up: 3 programs RUNNING (role embedded, 12 s)"
    assert "  api                  RUNNING   http://127.0.0.1:8001/metrics" in lines
    assert "  tsmonitor            RUNNING   http://127.0.0.1:9101/metrics" in lines
    assert "  supervisor_exporter  RUNNING   http://127.0.0.1:9200/metrics" in lines
    where = report.split("where to look", 1)[1]
    assert "http://127.0.0.1:8001/docs" in where
    assert "http://127.0.0.1:8002/admin/ (user admin" in where
    assert "http://127.0.0.1:8081/_sandbox/telegram/sent" in where
    assert f"-c {config} status" in where
    # The generated password stays in its file, out of terminals and CI logs.
    assert env["WEB_STAFF_PASSWORD"] not in report


def test_status_report_names_what_is_not_running(tmp_path: Path):
    from runtime.supervision.embedded import status_report

    env = embedded_environment({"TELEGRAM_BOT_TOKEN": "42:real"}, tmp_path)
    processes = [
        {"name": "api", "group": "api", "statename": "RUNNING"},
        {"name": "web", "group": "web", "statename": "FATAL"},
    ]
    report = status_report(processes, env, tmp_path / "c.conf", elapsed_s=3, colors=True)
    assert report.startswith("domos: 1 of 2 programs RUNNING (role all, 3 s)")
    assert "\x1b[31mFATAL   \x1b[0m" in report
    assert "_sandbox" not in report  # real tokens: no sandbox
