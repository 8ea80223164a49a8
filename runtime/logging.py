"""Structured logging for every domos program: structlog in front, the stdlib behind.

`configure_logging(settings, program="tsmonitor")` once at start-up. Afterwards:

- `structlog.get_logger()` and every stdlib logger (psycopg, uvicorn, aiogram, django, aiohttp …)
  go through the same processors and the same handler, so one program writes one format;
- the output is JSON lines when the stream is not a terminal (supervisord, Docker, files) and
  structlog's readable console format on a terminal, unless LOG_FORMAT says which (`domos run`
  decides once for the programs whose stdout is supervisord's pipe). A console line starts
  with the program's name, coloured and padded, so the lines of many programs interleaved on
  one terminal line up: `api                 15:52:09.123 [info     ] request_finished …`;
- every line carries `program`, an ISO-8601 UTC `timestamp`, `level`, `logger` and whatever is
  bound in `structlog.contextvars` (the monitor runner binds `monitor` and `tick_id`);
- secrets are redacted last, just before rendering: values under secret-looking keys, `Secret`
  objects, Telegram bot tokens and passwords inside URLs, wherever they appear in a line.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

import structlog
from structlog.dev import Column, ConsoleRenderer
from structlog.typing import EventDict, ExcInfo, Processor, WrappedLogger

from runtime.config import LogFormat, LogSettings, Secret, Settings

#: Console lines pad the program name to this width: the longest name a program logs under
#: (`supervisor_listener`; the catalogue's longest is `recurrent_payments`, a test checks).
CONSOLE_PROGRAM_WIDTH = 19
#: Foreground colours for program names (ANSI): cyan, green, yellow, blue, magenta and their
#: bright forms; red is left to errors. A name keeps its colour in every process (crc32, not
#: the per-process salted hash()).
_PROGRAM_COLOURS = ("36", "32", "33", "34", "35", "96", "92", "93", "94", "95")
_RESET = "\033[0m"
#: The machine's time zone when this module was first imported: Django sets TZ to its
#: TIME_ZONE (the community's zone) when it starts, and web's console lines would otherwise
#: show another hour than every other program's. A fixed offset: a dev console outlives no DST
#: change worth a lookup per line.
CONSOLE_ZONE = datetime.now().astimezone().tzinfo

REDACTED = "**********"

#: Parts of a key (split on `_`, `-`, `.`) that mark its value as secret.
_SECRET_KEY_PARTS = frozenset(
    {"password", "passwd", "pwd", "token", "secret", "authorization", "apikey", "cookie"}
)
#: Whole substrings that mark a key as secret even when not separated ("api_key", "X-Api-Key").
_SECRET_KEY_SUBSTRINGS = ("api_key", "api-key", "apikey", "private_key", "access_key")
_KEY_SPLIT = re.compile(r"[_\-.\s]+")
#: Telegram bot tokens: `<bot id>:<35 url-safe chars>`, also inside `/bot<token>/` URLs.
_BOT_TOKEN = re.compile(r"(?<![0-9])[0-9]{5,12}:[A-Za-z0-9_-]{30,}")
#: `scheme://user:password@host` -> keep the user, hide the password.
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)[^@/?#\s]+(?=@)")
#: `Bearer abc`, `Basic abc` credentials inside free text (headers logged as strings).
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_MAX_DEPTH = 6

#: Attribute that marks the handler this module installed, so a second call replaces it.
_HANDLER_MARK = "_domos_handler"

#: Stdlib loggers that are chatty at DEBUG/INFO; kept at WARNING unless the level is debug.
_NOISY_LOGGERS = ("asyncio", "aiosqlite", "psycopg.pool", "urllib3", "hpack", "multipart")


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    if any(part in _SECRET_KEY_PARTS for part in _KEY_SPLIT.split(lowered)):
        return True
    return any(fragment in lowered for fragment in _SECRET_KEY_SUBSTRINGS)


def scrub_text(text: str) -> str:
    """Hide credentials that can hide inside free text: bot tokens, URL passwords, auth headers."""
    if ":" in text:
        text = _BOT_TOKEN.sub(REDACTED, text)
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + "***", text)
    if " " in text:
        text = _AUTH_SCHEME.sub(lambda m: m.group("scheme") + " " + REDACTED, text)
    return text


def _redact_value(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Secret):
        return REDACTED
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item, depth + 1) for item in value]
    return value


def _redact_item(key: Any, value: Any, depth: int) -> Any:
    # Numbers, booleans and None under a secret-looking key (`token_count`) are not secrets.
    if (
        isinstance(key, str)
        and is_secret_key(key)
        and value is not None
        and not isinstance(value, bool | int | float)
    ):
        return REDACTED
    return _redact_value(value, depth)


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the last word before rendering, so nothing added later escapes it."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_item(key, value, 0)
    return event_dict


class _AddProgram:
    """Adds `program` to every line, including lines from threads that do not share contextvars."""

    def __init__(self, program: str) -> None:
        self.program = program

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("program", self.program)
        return event_dict


def _drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates every access line in `color_message` via `extra`.
    event_dict.pop("color_message", None)
    return event_dict


def _scrubbed_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """Console tracebacks: plain text (rich's default shows local variables, secrets included),
    scrubbed like every other string."""
    buffer = io.StringIO()
    structlog.dev.plain_traceback(buffer, exc_info)
    sio.write(scrub_text(buffer.getvalue()))


def _resolve_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    resolved = logging.getLevelName(level.upper())
    if not isinstance(resolved, int):
        raise ValueError(f"unknown log level {level!r}")
    return resolved


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def resolve_format(log_format: LogFormat, stream: TextIO) -> LogFormat:
    """`auto` -> `console` on a terminal, `json` otherwise; `json` and `console` stay."""
    if log_format != "auto":
        return log_format
    return "console" if is_terminal(stream) else "json"


class _ProgramColumn:
    """The program's name, padded to CONSOLE_PROGRAM_WIDTH, in its own colour."""

    def __init__(self, colors: bool) -> None:
        self.colors = colors

    def __call__(self, key: str, value: object) -> str:
        name = str(value)
        padded = name.ljust(CONSOLE_PROGRAM_WIDTH)
        if not self.colors:
            return padded
        colour = _PROGRAM_COLOURS[zlib.crc32(name.encode()) % len(_PROGRAM_COLOURS)]
        return f"\033[{colour}m{padded}{_RESET}"


class _LocalTime:
    """An ISO-8601 UTC timestamp as local `HH:MM:SS.mmm`: what a person at the terminal reads,
    beside supervisord's own lines in local time. The JSON lines keep the full UTC stamp."""

    def __init__(self, style: str, reset: str) -> None:
        self.style, self.reset = style, reset

    def __call__(self, key: str, value: object) -> str:
        try:
            stamp = datetime.fromisoformat(str(value)).astimezone(CONSOLE_ZONE)
            text = stamp.strftime("%H:%M:%S.%f")[:-3]
        except ValueError:
            text = str(value)
        return f"{self.style}{text}{self.reset}"


def console_renderer(*, colors: bool = True) -> ConsoleRenderer:
    """structlog's ConsoleRenderer with the program first, and local times of day."""
    renderer = ConsoleRenderer(colors=colors, exception_formatter=_scrubbed_traceback)
    styles = ConsoleRenderer.get_default_column_styles(colors)
    columns = [Column("program", _ProgramColumn(colors))]
    for column in renderer.columns:
        if column.key == "timestamp":
            column = Column("timestamp", _LocalTime(styles.timestamp, styles.reset))
        columns.append(column)
    renderer.columns = columns
    return renderer


def configure_logging(
    settings: Settings | LogSettings | str | int,
    *,
    program: str | None = None,
    stream: TextIO | None = None,
    log_format: LogFormat | None = None,
) -> None:
    """Route structlog and the stdlib into one handler on `stream` (stderr by default).

    `settings` gives the level and the format (LOG_LEVEL, LOG_FORMAT) and, for a program's
    Settings, its name; a bare level means format `auto`. `log_format` overrides the format.

    Safe to call again (tests, a program that re-reads its settings): the previous handler is
    replaced and structlog is reconfigured, nothing is duplicated.
    """
    log = settings.log if isinstance(settings, Settings) else settings
    if isinstance(log, LogSettings):
        level, configured_format = _resolve_level(log.level), log.format
    else:
        level, configured_format = _resolve_level(log), "auto"
    if program is None:
        program = settings.program if isinstance(settings, Settings) else "domos"
    stream = sys.stderr if stream is None else stream
    console = resolve_format(log_format or configured_format, stream) == "console"

    # Shared by structlog's own events and by foreign (stdlib) records.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _AddProgram(program),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.UnicodeDecoder(),
    ]
    final: list[Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        _drop_color_message,
    ]
    if console:
        # ConsoleRenderer formats exc_info itself, through the scrubbing formatter.
        final += [redact_secrets, console_renderer()]
    else:
        final += [
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(default=repr),
        ]

    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
    logging.captureWarnings(True)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Not cached: loggers created before a reconfiguration must follow the new one.
        cache_logger_on_first_use=False,
    )
