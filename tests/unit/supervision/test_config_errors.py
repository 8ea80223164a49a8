"""A configuration error ends a program with EX_CONFIG (78), which supervisord does not restart."""

from __future__ import annotations

import configparser
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg_pool
import pytest

from runtime.cli import main
from runtime.db.errors import postgres_refusal
from runtime.errors import EX_CONFIG
from runtime.supervision.programs import PROGRAMS, render_program

pytestmark = pytest.mark.usefixtures("restore_logging")


def test_every_program_is_left_exited_on_ex_config_and_restarted_on_any_other_exit():
    for program in PROGRAMS:
        parser = configparser.RawConfigParser()
        parser.read_string(render_program(program))
        section = parser[f"program:{program.name}"]
        assert section["autorestart"] == "unexpected", program.name
        assert section["exitcodes"] == str(EX_CONFIG), program.name


def test_a_config_error_exits_78_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DOMOS_TIMEZONE", "Mars/Olympus")
    assert main(["monitor", "tsmonitor", "--once"]) == EX_CONFIG
    assert capsys.readouterr().err == (
        "domos monitor: error: DOMOS_TIMEZONE: unknown time zone 'Mars/Olympus'\n"
    )


def _failed(message: str) -> psycopg.OperationalError:
    return psycopg.OperationalError(
        f'connection failed: connection to server at "10.0.0.5", port 5432 failed: {message}'
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            'FATAL:  password authentication failed for user "domos"',
            'password authentication failed for user "domos"',
        ),
        ('FATAL:  role "nobody" does not exist', 'role "nobody" does not exist'),
        ('FATAL:  database "domoss" does not exist', 'database "domoss" does not exist'),
        (
            'FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "domos", database "domos"',
            'no pg_hba.conf entry for host "10.0.0.9", user "domos", database "domos"',
        ),
        ("fe_sendauth: no password supplied", "fe_sendauth: no password supplied"),
        # Outages: worth waiting for, never a configuration error.
        ("Connection refused\n\tIs the server running on that host?", None),
        ("FATAL:  the database system is starting up", None),
        ("FATAL:  sorry, too many clients already", None),
        ("timeout expired", None),
    ],
)
def test_postgres_refusals_are_told_from_outages(message, reason):
    assert postgres_refusal(_failed(message)) == reason


def test_a_pool_timeout_is_never_a_refusal():
    assert postgres_refusal(psycopg_pool.PoolTimeout('role "x" does not exist')) is None


@pytest.fixture
def unknown_database_url(pg_server_url: str) -> str:
    """The test server (reachable, or the test fails: never skipped), a database it lacks."""
    return urlunsplit(urlsplit(pg_server_url)._replace(path="/domos_no_such_database"))


def test_a_database_that_refuses_the_login_exits_78_at_once(
    monkeypatch, capsys, unknown_database_url
):
    """A real server: an unknown database is refused at the first connection, not after the
    pool's timeout (the pool retries a refused login like an outage)."""
    monkeypatch.setenv("DB_TYPE", "postgres")
    monkeypatch.setenv("DATABASE_URL", unknown_database_url)
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", "30")
    assert main(["db", "status"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert 'database "domos_no_such_database" does not exist' in err, err


@pytest.mark.parametrize("command", [["botapi"], ["web", "migrate"]])
def test_programs_handing_over_to_gunicorn_or_django_exit_78_on_a_refused_login(
    monkeypatch, capsys, command, unknown_database_url
):
    """botapi's gunicorn workers and Django's migrate met the refusal themselves and exited
    like any failure (gunicorn 3, a traceback), which supervisord restarted for ever."""
    monkeypatch.setenv("DB_TYPE", "postgres")
    monkeypatch.setenv("DATABASE_URL", unknown_database_url)
    monkeypatch.setenv("BOTAPI_SEND_TOKEN", "t" * 32)
    assert main(command) == EX_CONFIG
    err = capsys.readouterr().err
    assert 'database "domos_no_such_database" does not exist' in err, err


def test_telegram_refusing_the_token_at_start_exits_78(monkeypatch, capsys):
    from aiogram.exceptions import TelegramUnauthorizedError
    from aiogram.methods import GetMe

    async def refused(settings, **_options):
        raise TelegramUnauthorizedError(GetMe(), "Unauthorized")

    monkeypatch.setattr("services.bot.app.run", refused)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:wrong")
    monkeypatch.delenv("METRICS_PORT", raising=False)
    assert main(["bot"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert "TELEGRAM_BOT_TOKEN: Telegram refused the token (401 Unauthorized)" in err
    assert "wrong" not in err
