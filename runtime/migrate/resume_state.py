"""What `--resume` reads back: the tables an earlier run copied or constrained, and
the rows the target refused then."""

from __future__ import annotations

import json

from runtime.migrate.run import Options, Run


def load_state(options: Options) -> dict[str, str]:
    if options.resume and options.state_file.exists():
        data = json.loads(options.state_file.read_text())
        tables: dict[str, str] = data.get("tables", {})
        return tables
    return {}


def save_state(options: Options, state: dict[str, str]) -> None:
    options.state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = options.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tables": state}, indent=2))
    tmp.replace(options.state_file)


def apply_refusals(run: Run, refusals: dict[str, dict[int, str]]) -> None:
    """Rows the target refused in an earlier run stay out of the source side, as they did then."""
    for plan in run.plans:
        if plan.label in refusals:
            plan.excluded_rowids.update(refusals[plan.label])
            run.refused_tables.add(plan.label)
