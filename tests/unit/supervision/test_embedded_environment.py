from __future__ import annotations

import io
from pathlib import Path

import pytest

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


class Answers:
    """supervisord's process lists, one per call; an exception stands for no answer."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)

    def __call__(self, config: Path) -> list[dict[str, str]]:
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list)
        return answer


def _statuses(*states: str) -> list[dict[str, str]]:
    return [
        {"name": name, "group": name, "statename": state}
        for name, state in zip(("api", "web"), states, strict=True)
    ]


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(time, "sleep", lambda _s: None)


def test_status_waits_for_running_and_the_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_sleep: None
):
    from runtime.observability import health
    from runtime.supervision import embedded

    answers = Answers(_statuses("STARTING", "STARTING"), _statuses("RUNNING", "RUNNING"))
    monkeypatch.setattr(health, "supervisor_processes", answers)
    asked: list[str] = []

    def answers(url: str) -> bool:  # the api at once, the admin on its second try
        asked.append(url)
        return "8001" in url or asked.count(url) > 1

    monkeypatch.setattr(embedded, "_answers", answers)
    out = io.StringIO()
    env = embedded_environment({}, tmp_path)
    assert embedded.print_status(tmp_path / "c.conf", env, 60, out, False) == 0
    assert out.getvalue().startswith("domos is up: 2 programs RUNNING")
    # Each page until it answered, then no more.
    assert asked == [
        "http://127.0.0.1:8001/docs",
        "http://127.0.0.1:8002/admin/",
        "http://127.0.0.1:8002/admin/",
    ]


def test_status_reports_a_fatal_program_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_sleep: None
):
    from runtime.observability import health
    from runtime.supervision import embedded

    monkeypatch.setattr(health, "supervisor_processes", Answers(_statuses("RUNNING", "FATAL")))
    out = io.StringIO()
    env = embedded_environment({}, tmp_path)
    assert embedded.print_status(tmp_path / "c.conf", env, 60, out, False) == 1
    assert out.getvalue().startswith("domos: 1 of 2 programs RUNNING")


def test_status_says_nothing_once_supervisord_went_away(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_sleep: None,
    capsys: pytest.CaptureFixture[str],
):
    from runtime.observability import health
    from runtime.supervision import embedded

    gone = Answers(_statuses("STARTING", "RUNNING"), ConnectionRefusedError())
    monkeypatch.setattr(health, "supervisor_processes", gone)
    out = io.StringIO()
    env = embedded_environment({}, tmp_path)
    assert embedded.print_status(tmp_path / "c.conf", env, 60, out, False) == 1
    assert out.getvalue() == ""
    assert capsys.readouterr().err == ""

    monkeypatch.setattr(health, "supervisor_processes", Answers(ConnectionRefusedError()))
    assert embedded.print_status(tmp_path / "c.conf", env, 0, out, False) == 1
    assert "supervisord is not answering" in capsys.readouterr().err
