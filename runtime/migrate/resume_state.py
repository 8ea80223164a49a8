"""What `--resume` reads back: the tables an earlier run copied or constrained, the rows the
target refused then, and what each source was when that run snapshotted it.

The state file (`Options.state_file`): `{"tables": {label: "copied" | "constrained"},
"sources": {source name: snapshot.source_state(...)}}`. A run that does not resume starts it
afresh once its snapshots are taken; a resumed run keeps its record of the sources.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.errors import MigrationError
from runtime.migrate.run import Options, Run


def _read(options: Options) -> dict[str, Any] | None:
    if not options.state_file.exists():
        return None
    data: dict[str, Any] = json.loads(options.state_file.read_text())
    return data


def load_state(options: Options) -> dict[str, str]:
    if options.resume:
        tables: dict[str, str] = (_read(options) or {}).get("tables", {})
        return tables
    return {}


def _write(options: Options, data: dict[str, Any]) -> None:
    options.state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = options.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(options.state_file)


def start_state(options: Options, sources: dict[str, dict[str, Any]]) -> None:
    """A new run: no table done yet; `sources`, what each source was before its snapshot."""
    _write(options, {"tables": {}, "sources": sources})


def save_state(options: Options, state: dict[str, str]) -> None:
    """The tables done so far; the record of the sources is kept as it is."""
    sources = (_read(options) or {}).get("sources", {})
    _write(options, {"tables": state, "sources": sources})


def check_sources(options: Options, current: dict[str, dict[str, Any]]) -> None:
    """Refuse to resume from a snapshot that is not the source as it is now (`current`, by
    source name): the stopped run's snapshots, and the tables it copied from them, would be
    taken for the file, and verification, comparing the target with those same snapshots,
    would pass. Run again without --resume to migrate the file as it is (MigrationError:
    the CLI's operator error, exit 2)."""
    recorded = (_read(options) or {}).get("sources", {})
    for source in options.sources:
        then = recorded.get(source.name)
        if then is None:
            raise MigrationError(
                f"--resume: {options.state_file} has no record of {source.path} as a stopped "
                "run snapshotted it (no such run, or one by an older domos): its snapshot "
                "cannot be trusted; run again without --resume (--truncate replaces the tables "
                "already copied)"
            )
        now = current[source.name]
        if then != now:
            changed = "; ".join(
                f"{key} {then.get(key)} then, {now.get(key)} now"
                for key in sorted(set(then) | set(now))
                if then.get(key) != now.get(key)
            )
            raise MigrationError(
                f"--resume: {source.path} changed since the stopped run snapshotted it "
                f"({changed}): the tables copied from that snapshot are stale; run again "
                "without --resume (--truncate replaces the tables already copied) to migrate "
                "the file as it is now"
            )


def apply_refusals(run: Run, refusals: dict[str, dict[int, str]]) -> None:
    """Rows the target refused in an earlier run stay out of the source side, as they did then."""
    for plan in run.plans:
        if plan.label in refusals:
            plan.excluded_rowids.update(refusals[plan.label])
            run.refused_tables.add(plan.label)
