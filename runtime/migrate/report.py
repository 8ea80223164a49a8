"""What a run tells: the plan as `--dry-run` prints it, the JSON report, the exit code."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from runtime.config import mask_url_password
from runtime.migrate.plan import TablePlan
from runtime.migrate.run import Run


def describe_plan(plans: list[TablePlan], sources: list[dict[str, Any]]) -> str:
    lines = [
        f"{source['name']}: not migrated: {', '.join(source['not_migrated'])}"
        for source in sources
        if source.get("not_migrated")
    ]
    lines += [f"warning: {warning}" for warning in _warnings(sources)]
    for plan in plans:
        lines.append(
            f"{plan.source_name}:{plan.table} -> {plan.label} ({plan.rows} rows, "
            f"{len(plan.chunks)} chunk(s), key {', '.join(plan.key) or 'none'}, "
            f"{'hashed in key order' if plan.hashed_in_key_order else 'multiset hash'})"
        )
        for column in plan.columns:
            flags = f' collate "{column.collation}"' if column.collation else ""
            flags += " identity" if column.identity else ""
            flags += " not null" if column.not_null else ""
            flags += f" default {column.default}" if column.default is not None else ""
            lines.append(f"    {column.source} -> {column.target} {column.pg_type}{flags}")
            lines.append(f"        stored: {_describe_classes(column.classes)}")
            lines.append(f"        why: {column.note}")
        for constraint in plan.constraints:
            lines.append(f"    {constraint.kind}: {constraint.name}")
        for problem, count in sorted(plan.problems.items()):
            lines.append(f"    problem: {problem} x{count}")
    return "\n".join(lines)


def _warnings(sources: list[dict[str, Any]]) -> list[str]:
    return [warning for source in sources for warning in source.get("warnings", [])]


def _describe_classes(classes: dict[str, int] | None) -> str:
    if classes is None:
        return "not profiled"
    return ", ".join(f"{name} {count}" for name, count in classes.items()) or "no rows"


def build_report(run: Run, exit_code: int) -> dict[str, Any]:
    options = run.options
    tables = []
    for plan in run.plans:
        outcome = run.outcomes[plan.label]
        tables.append(
            {
                "source": plan.source_name,
                "table": plan.table,
                "target": plan.label,
                "rows_source": plan.rows,
                "rows_written": outcome.rows_written,
                "rejects": outcome.rejects,
                "problems": plan.problems,
                "constraint_problems": outcome.constraint_problems,
                "columns": [
                    {
                        "source": c.source,
                        "target": c.target,
                        "type": c.pg_type,
                        "default": c.default,
                        "collation": c.collation,
                        "classes": c.classes,
                        "rule": c.note,
                    }
                    for c in plan.columns
                ],
                "key": list(plan.key),
                "hash_mode": "ordered" if plan.hashed_in_key_order else "multiset",
                "content_hash": outcome.content_hash,
                "verified": outcome.verified,
                "verification_problems": outcome.verification_problems,
                "resumed": outcome.skipped_by_resume,
                "copy_paths": sorted(outcome.copy_paths),
                "plan_basis": plan.basis,
                "replanned": outcome.replanned,
                "phases": outcome.phases,
            }
        )
    return {
        "started_at": run.started_at,
        "finished_at": datetime.now(UTC).isoformat(),
        "mode": options.mode,
        "target": mask_url_password(options.target_url),
        "rejects_file": str(options.rejects_file),
        "sources": [
            {**source, "tables": [t for t in tables if t["source"] == source["name"]]}
            for source in run.sources
        ],
        "phases": run.phases,
        "warnings": _warnings(run.sources),
        "rows_source": sum(p.rows for p in run.plans),
        "rows_rejected": sum(sum(o.rejects.values()) for o in run.outcomes.values()),
        "verified": all(o.verified for o in run.outcomes.values()),
        "exit_code": exit_code,
    }


def exit_code(run: Run) -> int:
    options = run.options
    verified = all(o.verified for o in run.outcomes.values()) if options.verify else True
    problems = any(
        o.rejects or o.constraint_problems or o.plan.problems for o in run.outcomes.values()
    ) or any(source.get("not_migrated") for source in run.sources)
    if not verified:
        return 1
    if problems and not options.allow_rejects:
        return 1
    return 0


def write_report(run: Run, exit_code: int) -> dict[str, Any]:
    report = build_report(run, exit_code)
    if run.options.report_path is not None:
        run.options.report_path.parent.mkdir(parents=True, exist_ok=True)
        run.options.report_path.write_text(json.dumps(report, indent=2, default=str))
    return report
