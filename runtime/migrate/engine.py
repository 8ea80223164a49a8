"""Orchestration of `domos migrate`: snapshot, plan, prepare, copy, constrain, verify, report.

Phases per run, each in its own module:
1. snapshot every source (online backup) and check it (quick_check, and integrity_check of the
   tables foreign keys point at, in the background: no chunk commits before it passed;
   foreign_key_check) - plan_phase.py, integrity_gate.py;
2. plan every table (types, rules, chunks) and refuse identifier collisions - nothing written yet
   (plan_phase.py, plan.py);
3. prepare the target: refuse non-empty tables unless --truncate; --resume keeps finished tables
   (target.py, resume_state.py), and refuses, before planning, a source changed since the
   stopped run snapshotted it;
4. copy chunks in parallel worker processes (binary COPY, bounded memory); a table planned from
   its declared types that breaks their promise is profiled, planned and copied again
   (copy_phase.py, copier.py);
5. add primary keys, uniques, indexes, then foreign keys; set sequences past the copied ids
   (keys.py as each table is copied, constraints.py for the rest);
6. verify every table on both sides independently (verify_schedule.py, verify.py); write the
   JSON report (report.py).
The run's options and what it learns live in run.py.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog

from runtime.errors import MigrationError
from runtime.migrate.constraints import add_constraints
from runtime.migrate.copy_phase import copy_tables
from runtime.migrate.keys import KeyBuilder
from runtime.migrate.plan import TablePlan
from runtime.migrate.plan_phase import prepare_plans
from runtime.migrate.rejects import load_refusals
from runtime.migrate.report import describe_plan, exit_code, write_report
from runtime.migrate.resume_state import apply_refusals, check_sources, load_state, start_state
from runtime.migrate.run import Options, Run
from runtime.migrate.snapshot import Snapshot, start_snapshots
from runtime.migrate.target import prepare_target, table_exists
from runtime.migrate.verify_schedule import (
    SideWork,
    complete_sqlite_digests,
    submit_postgres_digests,
    submit_sqlite_digests,
    verify_tables,
)
from runtime.migrate.workers import start_pool

log = structlog.get_logger("domos.migrate")


@contextmanager
def _phase(run: Run, name: str) -> Iterator[None]:
    started = time.perf_counter()
    log.info("phase_started", phase=name)
    try:
        yield
    finally:
        run.phases[name] = round(time.perf_counter() - started, 3)
        log.info("phase_finished", phase=name, duration_s=run.phases[name])


def migrate(
    options: Options,
    pool: ProcessPoolExecutor | None = None,
    snapshots: Mapping[str, Future[Snapshot]] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run a whole migration; returns (exit code, report). `pool`: workers started by the
    caller (`workers.start_pool`), shut down here; `snapshots`: the sources' snapshots the
    caller started (`snapshot.start_snapshots`)."""
    run = Run(options)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    if snapshots is None:
        snapshots = start_snapshots(options.sources, options.work_dir, resume=options.resume)
    with pool or start_pool(options.jobs) as pool:
        if options.resume:  # before anything is planned from a snapshot, or written
            check_sources(options, _source_states(options, snapshots))
        # The workers profile the large tables in rowid ranges, then copy and digest.
        with psycopg.connect(options.target_url, autocommit=True) as conn:
            with _phase(run, "plan"):
                # A dry run shows what the profile finds; a resumed run must plan the tables
                # the earlier run copied as that run ended up planning them: both profile.
                prepare_plans(
                    run,
                    conn if options.mode == "existing" else None,
                    pool,
                    from_declared=not (options.dry_run or options.resume),
                    check_in_background=not options.dry_run,
                    snapshots=snapshots,
                )
            if options.dry_run:
                print(describe_plan(run.plans, run.sources), file=sys.stdout)
                return 0, write_report(run, 0)
            state = load_state(options)
            if not options.resume:
                state = {}
                start_state(options, _source_states(options, snapshots))
            else:  # tables copied by the earlier run keep their refused rows out of verification
                parts = sorted((options.work_dir / "rejects").glob("*.jsonl"))
                refusals = load_refusals(*parts)
                apply_refusals(run, {k: v for k, v in refusals.items() if state.get(k) is not None})
            with _phase(run, "prepare"):
                readd_fks = prepare_target(run, conn, state)
        _copy_constrain_verify(run, state, readd_fks, pool)
    code = exit_code(run)
    return code, write_report(run, code)


def _source_states(
    options: Options, snapshots: Mapping[str, Future[Snapshot]]
) -> dict[str, dict[str, Any]]:
    """What each source was before its snapshot (or, reused by --resume, is now)."""
    return {source.name: snapshots[source.name].result().source_state for source in options.sources}


def _copy_constrain_verify(
    run: Run, state: dict[str, str], readd_fks: list[str], pool: ProcessPoolExecutor
) -> None:
    options = run.options
    sqlite_work: SideWork = {}

    def queue_source_side() -> None:
        if options.verify:
            sqlite_work.update(submit_sqlite_digests(run, pool))

    # The source side of verification is computed by the copy's own scan where no rule
    # applies; other tables' run in the workers as soon as they finish copying, overlapping
    # the rest of the copy and the constraints. The target side follows.
    # The target side of a table starts once its primary key exists, overlapping its
    # other indexes and the other tables' constraints (one thread more than jobs: digests
    # and index builds both run in the server).
    threads = ThreadPoolExecutor(max_workers=max(1, options.jobs) + 1)
    postgres_work: SideWork = {}
    lock = threading.Lock()

    def queue_target_side(plan: TablePlan) -> None:
        if options.verify:
            with lock:
                postgres_work.update(submit_postgres_digests(run, plan, pool, threads))

    builder = KeyBuilder(run, options.target_url, queue_target_side)
    try:
        with _phase(run, "copy"):
            copy_tables(
                run, state, pool, after_submit=queue_source_side, on_table_copied=builder.start
            )
        if options.verify:
            complete_sqlite_digests(run, pool, sqlite_work)
        with _phase(run, "constraints"):  # what is left of them once the copy is done
            add_constraints(run, state, readd_fks, builder)
        if options.verify:
            with _phase(run, "verify"):  # what is left of it once the constraints are done
                verify_tables(run, pool, sqlite_work, postgres_work, threads)
    except BaseException:
        for future in [*sqlite_work, *postgres_work]:
            future.cancel()  # a failed copy is not verified: do not wait for the digests
        raise
    finally:
        builder.close()
        threads.shutdown(wait=True, cancel_futures=True)


def verify_only(options: Options) -> tuple[int, dict[str, Any]]:
    """`domos migrate verify`: re-plan from fresh snapshots and compare, writing nothing."""
    run = Run(options)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(options.target_url, autocommit=True) as conn:
        with _phase(run, "plan"):
            prepare_plans(run, conn if options.mode == "existing" else None)
        missing = [p.label for p in run.plans if not table_exists(conn, p)]
    if missing:
        raise MigrationError("target tables missing: " + ", ".join(missing))
    for outcome in run.outcomes.values():
        outcome.skipped_by_resume = True
    apply_refusals(run, load_refusals(options.rejects_file))
    with start_pool(options.jobs) as pool, _phase(run, "verify"):
        verify_tables(run, pool)
    code = 0 if all(o.verified for o in run.outcomes.values()) else 1
    if code == 0 and not options.allow_rejects and any(o.rejects for o in run.outcomes.values()):
        code = 1
    return code, write_report(run, code)
