"""`--schema-recheck`: how often a program waiting for its schema asks again
(runtime.db.schema_gate). Apart from the gate, and light: `domos web` and `domos botapi` register
it before they set up prometheus_client's multiprocess directory, which an earlier import of
the gate's metrics would defeat."""

from __future__ import annotations

import argparse

#: How often a program waiting for the schema asks again (tests pass less).
DEFAULT_RECHECK_S = 5.0


def add_recheck_option(parser: argparse.ArgumentParser) -> None:
    """`--schema-recheck SECONDS` of every gated program (tests pass less than the default)."""
    parser.add_argument(
        "--schema-recheck",
        type=float,
        default=DEFAULT_RECHECK_S,
        metavar="SECONDS",
        help="while the database lacks migrations of this code, ask again every SECONDS "
        f"(default {DEFAULT_RECHECK_S:g})",
    )
