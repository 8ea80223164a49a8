"""Phase 4: every pending chunk copied by the workers; a table whose declared types broke
their promise is planned from its profile and copied again."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from functools import partial
from pathlib import Path

import psycopg
import structlog

from runtime.migrate import integrity_gate
from runtime.migrate import plan as planning
from runtime.migrate.chunk import ChunkResult
from runtime.migrate.copier import copy_chunk
from runtime.migrate.plan import TablePlan
from runtime.migrate.plan_phase import await_integrity
from runtime.migrate.progress import PhaseProgress
from runtime.migrate.resume_state import save_state
from runtime.migrate.run import Options, Run, TableOutcome
from runtime.migrate.sqlite_source import open_snapshot, read_tables
from runtime.migrate.target import recreate_table
from runtime.migrate.verify_schedule import digested_by_copy

log = structlog.get_logger("domos.migrate")


def copy_tables(
    run: Run,
    state: dict[str, str],
    pool: ProcessPoolExecutor,
    after_submit: Callable[[], None] | None = None,
    on_table_copied: Callable[[TablePlan], None] | None = None,
) -> None:
    """Copy every pending chunk; `after_submit` queues more work behind the chunks (the SQLite
    side of verification, which reads only the snapshot) before the copy is waited for.

    A table planned from its declared types whose promise a chunk breaks is, once its other
    chunks are done, profiled, planned again, recreated empty and copied again (`_replan`)."""
    options = run.options
    options.rejects_file.parent.mkdir(parents=True, exist_ok=True)
    reject_dir = options.work_dir / "rejects"
    reject_dir.mkdir(parents=True, exist_ok=True)
    pending = sorted((p for p in run.plans if state.get(p.label) is None), key=lambda p: -p.rows)
    for plan in run.plans:
        if state.get(plan.label) is not None:
            run.outcomes[plan.label].skipped_by_resume = True
    remaining: dict[str, int] = {}
    broken: dict[str, str] = {}  # table label -> why its declared types cannot be trusted
    futures: dict[Future[ChunkResult], tuple[TablePlan, int]] = {}

    def submit(plan: TablePlan) -> None:
        digest = options.verify and digested_by_copy(plan)
        remaining[plan.label] = len(plan.chunks)
        for index, chunk in enumerate(plan.chunks):
            part = reject_dir / f"{plan.schema}.{plan.target}.{index}.jsonl".replace("/", "_")
            part.unlink(missing_ok=True)
            future = pool.submit(
                copy_chunk,
                plan,
                chunk,
                options.target_url,
                str(part),
                digest=digest,
                before_commit=partial(integrity_gate.wait_passed, Path(plan.source_path)),
            )
            futures[future] = (plan, index)

    for plan in pending:
        submit(plan)
    if after_submit is not None:
        after_submit()
    total = sum(p.rows for p in pending)
    with PhaseProgress("copy", total, enabled=options.progress) as progress:
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                plan, index = futures.pop(future)
                try:
                    result = future.result()
                except BaseException as exc:
                    for other in futures:
                        other.cancel()
                    if isinstance(exc, integrity_gate.IntegrityFailed):
                        await_integrity(run)  # names the damaged source
                    raise
                if result.replan is not None:
                    broken.setdefault(plan.label, result.replan)
                else:
                    _count_chunk(run, plan, index, result)
                    progress.advance(result.rows_read, table=plan.label)
                remaining[plan.label] -= 1
                if remaining[plan.label]:
                    continue
                if plan.label in broken:
                    plan = _replan(run, plan, broken.pop(plan.label))
                    progress.add_total(plan.rows)
                    submit(plan)
                    continue
                state[plan.label] = "copied"
                save_state(options, state)
                outcome = run.outcomes[plan.label]
                log.info(
                    "table_copied",
                    table=plan.label,
                    rows=outcome.rows_written,
                    rejects=sum(outcome.rejects.values()),
                )
                if on_table_copied is not None:
                    on_table_copied(plan)
    await_integrity(run)  # a source whose tables had nothing to commit
    _merge_rejects(options, reject_dir)


def _count_chunk(run: Run, plan: TablePlan, index: int, result: ChunkResult) -> None:
    if result.digest is not None:
        run.copy_digests[(plan.label, index)] = result.digest
    if result.refused:
        # Left out of the source side of verification, like rows no rule can convert.
        plan.excluded_rowids.update(result.refused)
        run.refused_tables.add(plan.label)
    outcome = run.outcomes[plan.label]
    outcome.rows_written += result.rows_written
    outcome.copy_paths.add(result.path)
    outcome.phases["copy_s"] = round(outcome.phases.get("copy_s", 0) + result.seconds, 3)
    for problem, count in result.rejects.items():
        outcome.rejects[problem] = outcome.rejects.get(problem, 0) + count


def _replan(run: Run, plan: TablePlan, reason: str) -> TablePlan:
    """Plan a table from its profile after its declared types broke their promise, and empty
    its target (recreated: the profile may choose other types). What the first copy wrote and
    counted is dropped with it."""
    log.warning("table_replanned", table=plan.label, reason=reason)
    source = next(s for s in run.options.sources if s.name == plan.source_name)
    conn = open_snapshot(Path(plan.source_path))
    try:
        tables = read_tables(conn)
        table = next(t for t in tables if t.name == plan.table)
        pk_of = {t.name: t.primary_key for t in tables}
        new = planning.plan_table(
            source,
            Path(plan.source_path),
            conn,
            table,
            pk_of,
            run.options.chunk_rows,
            excluded={},
            keep_case=run.options.keep_case,
        )
    finally:
        conn.close()
    with psycopg.connect(run.options.target_url, autocommit=True) as target:
        recreate_table(target, new)
    run.plans[run.plans.index(plan)] = new
    phases = run.outcomes[plan.label].phases
    run.outcomes[plan.label] = TableOutcome(new, replanned=reason)
    run.outcomes[plan.label].phases["first_copy_s"] = phases.get("copy_s", 0.0)
    for key in [k for k in run.copy_digests if k[0] == plan.label]:
        del run.copy_digests[key]
    return new


def _merge_rejects(options: Options, reject_dir: Path) -> None:
    with open(options.rejects_file, "w", encoding="utf-8") as merged:
        for part in sorted(reject_dir.glob("*.jsonl")):
            merged.write(part.read_text(encoding="utf-8"))
