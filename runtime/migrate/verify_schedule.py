"""Phase 6 scheduling: which side of which chunk is digested where and when (verify.py
computes the digests), and the comparison of both sides per table."""

from __future__ import annotations

from concurrent.futures import (
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
)

import structlog

from runtime.migrate import columnar
from runtime.migrate.digest import Digest
from runtime.migrate.plan import TablePlan
from runtime.migrate.progress import PhaseProgress
from runtime.migrate.run import Run
from runtime.migrate.verify import (
    compare,
    computed_by_server,
    differing_columns,
    pg_ranges,
    postgres_digest,
    sqlite_digest,
)

log = structlog.get_logger("domos.migrate")


SideWork = dict["Future[Digest]", tuple[str, str, int]]


def verify_chunks(
    plan: TablePlan,
) -> list[tuple[int, tuple[int, int], tuple[int | None, int | None]]]:
    ranges = pg_ranges(plan)
    chunks = plan.chunks if len(ranges) > 1 else [(0, -1)]
    return [
        (index, chunk, bounds)
        for index, (chunk, bounds) in enumerate(zip(chunks, ranges, strict=True))
    ]


def digested_by_copy(plan: TablePlan) -> bool:
    """The copy computes this table's source-side digest from its own scan where its chunks are
    verification's: the Python path from the rows it converts (verify.chunk_digest), the fast
    path (every column passthrough, no row left out) from its batches where the columnar hash
    applies (columnar.py). A chunk copied otherwise is read again after the copy."""
    fast = all(c.passthrough for c in plan.columns) and not plan.excluded_rowids
    if fast and not columnar.supports(plan):
        return False
    return len(verify_chunks(plan)) == len(plan.chunks)


def submit_sqlite_digests(run: Run, pool: ProcessPoolExecutor) -> SideWork:
    """The source side of verification, for the tables whose copy does not compute it:
    independent of the target, so it can start at once."""
    work: SideWork = {}
    for plan in run.plans:
        if not digested_by_copy(plan):
            for index, chunk, _ in verify_chunks(plan):
                work[pool.submit(sqlite_digest, plan, chunk)] = (plan.label, "sqlite", index)
    return work


def complete_sqlite_digests(run: Run, pool: ProcessPoolExecutor, work: SideWork) -> None:
    """After the copy: digests made before PostgreSQL refused rows of their table are redone
    without those rows; every chunk still without a source side gets one (resumed tables,
    lenient UTF-8 reads, a sum beyond 64 bits)."""
    for future, (label, _, _) in list(work.items()):
        if label in run.refused_tables:
            future.cancel()
            del work[future]
    for key in [k for k in run.copy_digests if k[0] in run.refused_tables]:
        del run.copy_digests[key]
    have = {(label, index) for label, _, index in work.values()} | set(run.copy_digests)
    for plan in run.plans:
        for index, chunk, _ in verify_chunks(plan):
            if (plan.label, index) not in have:
                work[pool.submit(sqlite_digest, plan, chunk)] = (plan.label, "sqlite", index)


def submit_postgres_digests(
    run: Run, plan: TablePlan, pool: ProcessPoolExecutor, threads: ThreadPoolExecutor
) -> SideWork:
    """The target side of one table; row-text tables are computed by the server, so threads
    only wait for them."""
    executor: Executor = threads if computed_by_server(plan) else pool
    work: SideWork = {}
    for index, _, bounds in verify_chunks(plan):
        future = executor.submit(postgres_digest, plan, bounds, run.options.target_url)
        work[future] = (plan.label, "postgres", index)
    return work


def verify_tables(
    run: Run,
    pool: ProcessPoolExecutor,
    sqlite_work: SideWork | None = None,
    postgres_work: SideWork | None = None,
    threads: ThreadPoolExecutor | None = None,
) -> None:
    """Compare both sides of every table. `postgres_work` holds target digests already
    submitted (on `threads`); the rest are submitted here."""
    options = run.options
    work: SideWork = {}
    if sqlite_work is None:  # verify alone: every chunk from the snapshot
        run.copy_digests.clear()
        complete_sqlite_digests(run, pool, work)
    else:
        work.update(sqlite_work)
    own_threads = threads is None
    threads = threads or ThreadPoolExecutor(max_workers=max(1, options.jobs))
    submitted = {label for label, _, _ in (postgres_work or {}).values()}
    work.update(postgres_work or {})
    for plan in run.plans:
        if plan.label not in submitted:
            work.update(submit_postgres_digests(run, plan, pool, threads))
    parts: dict[tuple[str, str], dict[int, Digest]] = {}
    for (label, index), digest in run.copy_digests.items():
        parts.setdefault((label, "sqlite"), {})[index] = digest
    try:
        with PhaseProgress("verify", len(work), enabled=options.progress) as progress:
            for future in as_completed(work):
                label, side, index = work[future]
                parts.setdefault((label, side), {})[index] = future.result()
                progress.advance(1, table=label, side=side)
    finally:
        if own_threads:
            threads.shutdown(wait=True, cancel_futures=True)
    for plan in run.plans:
        sides = {}
        for side in ("sqlite", "postgres"):
            digest = Digest()
            for _, part in sorted(parts[(plan.label, side)].items()):
                digest.merge(part)
            sides[side] = digest
        outcome = run.outcomes[plan.label]
        problems = compare(plan, sides["sqlite"], sides["postgres"])
        if "content hash differs" in problems:
            differing = differing_columns(plan, options.target_url)
            if differing:
                problems.append("columns that differ: " + ", ".join(differing))
        rejected = sides["sqlite"].skipped_rows
        if sides["sqlite"].rows + rejected != plan.rows:
            problems.append(
                f"rows do not add up: {plan.rows} in source, {sides['sqlite'].rows} convertible, "
                f"{rejected} rejected"
            )
        if (
            not outcome.skipped_by_resume
            and outcome.rejects
            and (sum(outcome.rejects.values()) != rejected)
        ):
            problems.append(
                f"reject counts differ: copy {sum(outcome.rejects.values())}, verify {rejected}"
            )
        outcome.verified = not problems
        outcome.verification_problems = problems
        outcome.content_hash = sides["postgres"].content_hash
        outcome.phases["verify_sqlite_s"] = round(sides["sqlite"].seconds, 3)
        outcome.phases["verify_postgres_s"] = round(sides["postgres"].seconds, 3)
        if outcome.skipped_by_resume:
            outcome.rejects = {"previous_run": rejected} if rejected else {}
        if problems:
            log.error("table_not_verified", table=plan.label, problems=problems)
        else:
            log.info("table_verified", table=plan.label, rows=sides["postgres"].rows)
