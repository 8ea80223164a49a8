"""`domos supervisor check`: a role's settings, read as its programs read them at start-up, before
supervisord starts (docker/entrypoint.sh runs it).

A bad value (an unknown DOMOS_TIMEZONE, a malformed DATABASE_URL, a missing TELEGRAM_BOT_TOKEN)
refuses the container at once with every bad variable named and exit EX_CONFIG, instead of
supervisord starting programs that each take seconds to import, fail and exit.

Only what the environment decides: no database and no Telegram is contacted (they may not be up
yet). A password PostgreSQL refuses or a token Telegram refuses is found by the program itself,
which exits EX_CONFIG (runtime.errors); the event listener then restarts the role's container.
Each check does what its program does before it serves, no more: a stricter check would refuse a
container that would have worked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from runtime.config import Settings
from runtime.errors import ConfigError, DomosError
from runtime.supervision.programs import Program, roles

Check = Callable[[Mapping[str, str], Settings], None]


def _api(environ: Mapping[str, str], settings: Settings) -> None:
    from services.api.settings import ApiSettings

    ApiSettings.from_env(environ)
    settings.yookassa.require_credentials()


def _bot(environ: Mapping[str, str], settings: Settings) -> None:
    from services.bot.config import BotSettings

    BotSettings.from_env(environ)


def _botapi(environ: Mapping[str, str], settings: Settings) -> None:
    from services.botapi.settings import BotApiSettings

    BotApiSettings.from_env(environ)


def _monitor(name: str) -> Check:
    def check(environ: Mapping[str, str], settings: Settings) -> None:
        from runtime.config import Env
        from runtime.monitor.base import build_config
        from runtime.monitor.loader import DEFAULT_PACKAGE, PACKAGE_VARIABLE, load_monitor

        package = Env(environ).text(PACKAGE_VARIABLE, DEFAULT_PACKAGE) or DEFAULT_PACKAGE
        build_config(load_monitor(name, package), environ, settings)

    return check


def program_check(program: Program) -> Check | None:
    """What `program` reads from the environment before it serves, beyond runtime.Settings."""
    if program.command.startswith("domos monitor "):
        return _monitor(program.name)
    return {"api": _api, "bot": _bot, "botapi": _botapi}.get(program.name)


def check_role(role: str, environ: Mapping[str, str]) -> list[str]:
    """Every configuration problem of the role's programs, one line each ("VARIABLE: problem",
    prefixed with the program where it is that program's own setting); empty when none."""
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        # Every program reads these first: nothing else can be read without them.
        return [str(exc)]
    problems = []
    for program in roles()[role]:
        check = program_check(program)
        if check is None:
            continue
        try:
            check(environ, settings)
        except DomosError as exc:  # ConfigError, or a monitor that cannot be loaded
            problems.append(f"{program.name}: {exc}")
    return problems
