"""runtime.logging: JSON lines, stdlib routing, context, redaction, idempotence."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import structlog

from runtime.config import LogSettings, Secret, Settings
from runtime.errors import ConfigError
from runtime.logging import (
    CONSOLE_PROGRAM_WIDTH,
    CONSOLE_ZONE,
    REDACTED,
    configure_logging,
    is_secret_key,
    scrub_text,
)

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1"


pytestmark = pytest.mark.usefixtures("restore_logging")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_program_level_logger_and_utc_timestamp() -> None:
    stream = io.StringIO()
    configure_logging("info", program="api", stream=stream)
    structlog.get_logger("runtime.test").info("payment_created", amount_minor=99000)
    [line] = lines(stream)
    assert line["event"] == "payment_created"
    assert line["amount_minor"] == 99000
    assert line["program"] == "api"
    assert line["level"] == "info"
    assert line["logger"] == "runtime.test"
    stamp = datetime.fromisoformat(line["timestamp"])
    assert stamp.utcoffset() == timedelta(0)


def test_settings_give_level_and_program() -> None:
    stream = io.StringIO()
    settings = Settings.from_env({"LOG_LEVEL": "warning", "DOMOS_PROGRAM": "botapi"})
    configure_logging(settings, stream=stream)
    log = structlog.get_logger()
    log.info("hidden")
    log.warning("shown")
    logging.getLogger("aiohttp.access").info("hidden too")
    assert [(line["event"], line["program"]) for line in lines(stream)] == [("shown", "botapi")]


@pytest.mark.parametrize("name", ["psycopg", "uvicorn.error", "aiogram.dispatcher", "django"])
def test_stdlib_loggers_go_through_the_same_processors(name: str) -> None:
    stream = io.StringIO()
    configure_logging("info", program="web", stream=stream)
    structlog.contextvars.bind_contextvars(monitor="tsmonitor", tick_id="abc")
    logging.getLogger(name).warning("connection to %s lost", "db:5432", extra={"attempt": 2})
    [line] = lines(stream)
    assert line["event"] == "connection to db:5432 lost"
    assert line["logger"] == name
    assert line["level"] == "warning"
    assert line["program"] == "web"
    assert line["attempt"] == 2
    assert (line["monitor"], line["tick_id"]) == ("tsmonitor", "abc")
    assert "timestamp" in line


def test_contextvars_are_merged_and_unbound() -> None:
    stream = io.StringIO()
    configure_logging("info", program="p", stream=stream)
    log = structlog.get_logger()
    with structlog.contextvars.bound_contextvars(monitor="ban_monitor", tick_id="t1"):
        log.info("inside")
    log.info("outside")
    inside, outside = lines(stream)
    assert (inside["monitor"], inside["tick_id"]) == ("ban_monitor", "t1")
    assert "monitor" not in outside


def test_calling_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", program="one", stream=first)
    configure_logging("info", program="two", stream=second)
    structlog.get_logger().info("once")
    logging.getLogger("psycopg").warning("also once")
    assert first.getvalue() == ""
    assert [(line["event"], line["program"]) for line in lines(second)] == [
        ("once", "two"),
        ("also once", "two"),
    ]


def test_exceptions_are_rendered_and_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging("info", program="p", stream=stream)
    try:
        raise ConnectionError("cannot connect to postgresql://app:s3cr3t@db/domos")
    except ConnectionError:
        structlog.get_logger().exception("db_connect_failed")
        logging.getLogger("psycopg.pool").exception("pool failed")
    for line in lines(stream):
        assert "Traceback" in line["exception"]
        assert "ConnectionError" in line["exception"]
        assert "s3cr3t" not in json.dumps(line)
        assert "postgresql://app:***@db/domos" in line["exception"]


def test_redaction_of_fields() -> None:
    stream = io.StringIO()
    configure_logging("debug", program="p", stream=stream)
    structlog.get_logger().info(
        "request",
        password="hunter2",
        bot_token=BOT_TOKEN,
        Authorization="Bearer abcdefghijklmnop",
        api_key="k-123",
        secret_key=Secret("ys_live"),
        setting=Secret("anything"),
        token_count=3,
        token=None,
        headers={"X-Api-Key": "abc", "Accept": "json", "cookie": "sid=1"},
        url=f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage",
        dsn="postgresql://user:pw@host:5432/db",
        items=[{"password": "x"}, "plain"],
        note="header was Authorization: Basic dXNlcjpwYXNzd29yZA==",
    )
    [line] = lines(stream)
    text = json.dumps(line)
    for secret in ("hunter2", BOT_TOKEN, "abcdefghijklmnop", "k-123", "ys_live", "anything"):
        assert secret not in text
    assert "dXNlcjpwYXNzd29yZA==" not in text
    assert line["password"] == REDACTED
    assert line["setting"] == REDACTED
    assert line["token_count"] == 3  # counts are not secrets
    assert line["token"] is None
    assert line["headers"] == {"X-Api-Key": REDACTED, "Accept": "json", "cookie": REDACTED}
    assert line["url"] == f"https://api.telegram.org/bot{REDACTED}/sendMessage"
    assert line["dsn"] == "postgresql://user:***@host:5432/db"
    assert line["items"] == [{"password": REDACTED}, "plain"]


def test_bot_token_in_a_stdlib_message_is_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging("info", program="bot", stream=stream)
    logging.getLogger("aiogram.event").info("POST %s", f"http://sandbox/bot{BOT_TOKEN}/getMe")
    [line] = lines(stream)
    assert BOT_TOKEN not in line["event"]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("POSTGRES_PASSWORD", True),
        ("db_passwd", True),
        ("telegram_bot_token", True),
        ("secret_key", True),
        ("Authorization", True),
        ("x-api-key", True),
        ("apiKey", True),
        ("aws_access_key_id", True),
        ("set-cookie", True),
        ("event", False),
        ("tokens_issued", False),  # plural is a different word: a count or a list of ids
        ("monitor", False),
        ("secretary", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text", "plain text"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("https://user@host/path", "https://user@host/path"),
        ("time 12:30:45 ok", "time 12:30:45 ok"),
        (f"token {BOT_TOKEN} leaked", f"token {REDACTED} leaked"),
        ("Bearer abc", "Bearer abc"),  # too short to be a credential
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_renderer_on_a_tty() -> None:
    stream = FakeTTY()
    configure_logging("info", program="p", stream=stream)
    structlog.get_logger().info("tick_succeeded", items=3, password="hunter2")
    output = stream.getvalue()
    assert "tick_succeeded" in output
    assert "hunter2" not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


def test_console_tracebacks_hide_locals_and_scrub_secrets() -> None:
    stream = FakeTTY()
    configure_logging("info", program="p", stream=stream)
    password = "local-hunter2"
    try:
        raise ConnectionError(f"postgresql://app:s3cr3t@db/domos refused ({len(password)})")
    except ConnectionError:
        structlog.get_logger().exception("db_connect_failed")
    output = stream.getvalue()
    assert "ConnectionError" in output
    assert "Traceback" in output
    assert "s3cr3t" not in output
    assert "local-hunter2" not in output


def test_format_can_be_forced() -> None:
    stream = FakeTTY()
    configure_logging("info", program="p", stream=stream, log_format="json")
    structlog.get_logger().info("forced")
    assert lines(stream)[0]["event"] == "forced"


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_log_format_setting_wins_over_the_terminal_check() -> None:
    on_a_tty = FakeTTY()
    configure_logging(Settings.from_env({"LOG_FORMAT": "json"}), stream=on_a_tty)
    structlog.get_logger().info("asked_for_json")
    assert lines(on_a_tty)[0]["event"] == "asked_for_json"

    piped = io.StringIO()
    configure_logging(LogSettings.from_env({"LOG_FORMAT": "console"}), program="p", stream=piped)
    structlog.get_logger().info("asked_for_console")
    assert "asked_for_console" in piped.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(piped.getvalue())


def test_an_unknown_log_format_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        LogSettings.from_env({"LOG_FORMAT": "xml"})


def test_console_lines_start_with_the_program_aligned_and_coloured() -> None:
    stream = FakeTTY()
    for program in ("api", "recurrent_payments"):
        configure_logging("info", program=program, stream=stream)
        structlog.get_logger().info("tick_succeeded", items=3)
    raw = stream.getvalue().splitlines()
    plain = [_ANSI.sub("", line) for line in raw]
    assert plain[0].startswith("api".ljust(CONSOLE_PROGRAM_WIDTH) + " ")
    assert plain[1].startswith("recurrent_payments".ljust(CONSOLE_PROGRAM_WIDTH) + " ")
    # The event starts in the same column whichever program wrote the line.
    assert plain[0].index("tick_succeeded") == plain[1].index("tick_succeeded")
    assert "items=3" in plain[0]
    # Each program's name in its own colour.
    colours = [line[: line.index("m") + 1] for line in raw]
    assert all(colour.startswith("\x1b[") for colour in colours)
    assert colours[0] != colours[1]


def test_console_time_of_day_is_local() -> None:
    stream = FakeTTY()
    configure_logging("info", program="p", stream=stream)
    # The zone the machine had when runtime.logging was imported: Django, configured by other
    # tests of this session, sets TZ to the community's zone in this same process.
    before = datetime.now(CONSOLE_ZONE).strftime("%H:%M")
    structlog.get_logger().info("now")
    after = datetime.now(CONSOLE_ZONE).strftime("%H:%M")
    stamp = _ANSI.sub("", stream.getvalue()).split()[1]
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", stamp), stamp
    assert stamp[:5] in (before, after)
