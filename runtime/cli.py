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

from runtime.errors import DomosError

#: Modules that contribute subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "runtime.db.cli",
    "runtime.monitor.cli",
    "runtime.migrate.cli",
    "runtime.backup.cli",
    "services.sandbox.cli",
    "services.api.cli",
    "services.botapi.cli",
    "runtime.supervision.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="domos", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except DomosError as exc:
        # A clear one-line error for the operator; the traceback is for programming errors only.
        print(f"domos {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
