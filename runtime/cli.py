"""The `domos` command: one entry point, one subcommand per area.

Each area module exposes `register(subparsers)`, which adds its subcommands and sets
`handler=callable(args) -> int` on them. Modules keep heavy imports inside their handlers so that
`domos --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from runtime.errors import EX_CONFIG, ConfigError, DomosError

#: Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "runtime.db.cli",
    "runtime.monitor.cli",
    "runtime.migrate.cli",
    "runtime.backup.cli",
    "services.sandbox.cli",
    "services.api.cli",
    "services.botapi.cli",
    "services.bot.cli",
    "services.web.cli",
    "runtime.supervision.cli",
    "runtime.supervision.demo",
    "runtime.observability.cli",
)

#: Subcommand -> the module that registers it. A program imports only its own command's module,
#: so one area's import-time problem cannot stop every other program from starting.
COMMAND_OWNERS: dict[str, str] = {
    "db": "runtime.db.cli",
    "monitor": "runtime.monitor.cli",
    "migrate": "runtime.migrate.cli",
    "backup": "runtime.backup.cli",
    "restore": "runtime.backup.cli",
    "sandbox": "services.sandbox.cli",
    "api": "services.api.cli",
    "botapi": "services.botapi.cli",
    "bot": "services.bot.cli",
    "web": "services.web.cli",
    "run": "runtime.supervision.cli",
    "supervisor": "runtime.supervision.cli",
    "demo": "runtime.supervision.demo",
    "observability": "runtime.observability.cli",
    "health": "runtime.observability.cli",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv` naming a known command, only that command's module is imported."""
    parser = argparse.ArgumentParser(prog="domos", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = next((arg for arg in argv or () if not arg.startswith("-")), None)
    owner = COMMAND_OWNERS.get(command) if command is not None else None
    for module_name in (owner,) if owner else COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        # Its own exit status (EX_CONFIG): supervisord does not restart a program that exits
        # with it, and the event listener restarts the role's container visibly instead.
        print(f"domos {args.command}: error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except DomosError as exc:
        # A clear one-line error for the operator; the traceback is for programming errors only.
        print(f"domos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
