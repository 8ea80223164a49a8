"""Orchestration of `domos migrate`: snapshot, plan, prepare, copy, constrain, verify, report.

Phases per run:
1. snapshot every source (online backup) and check it (integrity_check in the background, no
   chunk commits before it passed; foreign_key_check);
2. plan every table (types, rules, chunks) and refuse identifier collisions - nothing written yet;
3. prepare the target: refuse non-empty tables unless --truncate; --resume keeps finished tables;
4. copy chunks in parallel worker processes (binary COPY, bounded memory); a table planned from
   its declared types that breaks their promise is profiled, planned and copied again;
5. add primary keys, uniques, indexes, then foreign keys; set sequences past the copied ids;
6. verify every table on both sides independently; write the JSON report.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import structlog

from runtime.config import mask_url_password
from runtime.errors import MigrationError
from runtime.migrate import columnar, integrity_gate
from runtime.migrate import plan as planning
from runtime.migrate.chunk import ChunkResult
from runtime.migrate.copier import copy_chunk
from runtime.migrate.digest import Digest
from runtime.migrate.plan import TablePlan, quote_ident
from runtime.migrate.progress import PhaseProgress
from runtime.migrate.rejects import load_refusals
from runtime.migrate.snapshot import Source, start_snapshots
from runtime.migrate.sqlite_source import (
    foreign_key_violations,
    open_snapshot,
    read_tables,
)
from runtime.migrate.verify import (
    compare,
    computed_by_server,
    pg_ranges,
    postgres_digest,
    sqlite_digest,
)
from runtime.migrate.workers import Checker, start_pool

log = structlog.get_logger("domos.migrate")

DEFAULT_CHUNK_ROWS = 250_000
#: maintenance_work_mem of the sessions that build keys and indexes (KeyBuilder).
INDEX_BUILD_MEMORY = "256MB"


@dataclass
class Options:
    sources: list[Source]
    target_url: str
    mode: str = "infer"  # infer | existing
    work_dir: Path = Path("var/migrate")
    report_path: Path | None = None
    rejects_path: Path | None = None
    allow_rejects: bool = False
    truncate: bool = False
    resume: bool = False
    dry_run: bool = False
    verify: bool = True
    jobs: int = 2
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    progress: bool | None = None  # None: bars only on a terminal
    skip_tables: frozenset[str] = frozenset()

    @property
    def rejects_file(self) -> Path:
        return self.rejects_path or self.work_dir / "rejects.jsonl"

    @property
    def state_file(self) -> Path:
        return self.work_dir / "state.json"


@dataclass
class TableOutcome:
    plan: TablePlan
    rows_written: int = 0
    rejects: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    skipped_by_resume: bool = False
    verified: bool | None = None
    verification_problems: list[str] = field(default_factory=list)
    content_hash: str | None = None
    constraint_problems: list[str] = field(default_factory=list)
    copy_paths: set[str] = field(default_factory=set)
    #: Why a plan from declared types was replaced by one from the profile (copy_tables).
    replanned: str | None = None


@dataclass
class Run:
    options: Options
    plans: list[TablePlan] = field(default_factory=list)
    outcomes: dict[str, TableOutcome] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    #: Source-side digests the copy computed from its own scan: (table label, chunk) -> digest.
    copy_digests: dict[tuple[str, int], Digest] = field(default_factory=dict)
    #: Tables where PostgreSQL refused rows (constraints of an existing table).
    refused_tables: set[str] = field(default_factory=set)
    #: Each source's integrity_check (source name -> its problems), run in the background.
    integrity_checks: dict[str, Future[list[str]]] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


@contextmanager
def _phase(run: Run, name: str) -> Iterator[None]:
    started = time.perf_counter()
    log.info("phase_started", phase=name)
    try:
        yield
    finally:
        run.phases[name] = round(time.perf_counter() - started, 3)
        log.info("phase_finished", phase=name, duration_s=run.phases[name])


def prepare_plans(
    run: Run,
    target: psycopg.Connection[Any] | None,
    scanner: Executor | None = None,
    *,
    from_declared: bool = False,
    check_in_background: bool = False,
    snapshots: Mapping[str, Future[Path]] | None = None,
) -> None:
    """Snapshot and check every source, then plan its tables. Writes nothing to the target.
    `from_declared`: tables whose declared types promise the fast copy skip the profile, and
    the copy checks the promise (plan.py `declared_columns`). `check_in_background`: the
    integrity checks may still run on return (`await_integrity`, integrity_gate.py)."""
    options = run.options
    if snapshots is None:
        snapshots = start_snapshots(options.sources, options.work_dir, resume=options.resume)
    # integrity_check reads the whole file: it runs in its own process while the tables are
    # planned, and, in the background, copied.
    checker = Checker()
    for source in options.sources:
        path = snapshots[source.name].result()
        integrity_gate.clear(path)
        run.integrity_checks[source.name] = checker.submit(integrity_gate.check, path)
        conn = open_snapshot(path)
        try:
            violations = foreign_key_violations(conn)
            tables = read_tables(conn)
            if options.mode == "existing":
                assert target is not None
                plans = planning.plan_existing(
                    source,
                    path,
                    conn,
                    tables,
                    violations,
                    target,
                    options.chunk_rows,
                    options.skip_tables,
                )
            else:
                plans = planning.plan_infer(
                    source,
                    path,
                    conn,
                    tables,
                    violations,
                    options.chunk_rows,
                    scanner,
                    from_declared=from_declared,
                )
        finally:
            conn.close()
        run.sources.append(
            {
                "name": source.name,
                "path": str(source.path),
                "schema": source.schema,
                "snapshot": str(path),
                "integrity_check": "running",
                "foreign_key_violations": len(violations),
                "tables": [p.label for p in plans],
            }
        )
        run.plans.extend(plans)
    checker.shutdown()
    if not check_in_background:
        await_integrity(run)
    errors = planning.check_identifiers(run.plans)
    if errors:
        raise MigrationError("identifier collisions:\n  " + "\n  ".join(errors))
    for plan in run.plans:
        run.outcomes[plan.label] = TableOutcome(plan)


def await_integrity(run: Run) -> None:
    """Wait for every source's integrity_check; raise on the first that failed."""
    for source in run.sources:
        problems = run.integrity_checks[source["name"]].result()
        source["integrity_check"] = "failed" if problems else "ok"
        if problems:
            raise integrity_gate.failure(Path(source["path"]), problems)


def describe_plan(plans: list[TablePlan]) -> str:
    lines = []
    for plan in plans:
        lines.append(
            f"{plan.source_name}:{plan.table} -> {plan.label} ({plan.rows} rows, "
            f"{len(plan.chunks)} chunk(s), key {', '.join(plan.key) or 'none: multiset hash'})"
        )
        for column in plan.columns:
            flags = f' collate "{column.collation}"' if column.collation else ""
            flags += " identity" if column.identity else ""
            flags += " not null" if column.not_null else ""
            lines.append(f"    {column.source} -> {column.target} {column.pg_type}{flags}")
            lines.append(f"        stored: {_describe_classes(column.classes)}")
            lines.append(f"        why: {column.note}")
        for constraint in plan.constraints:
            lines.append(f"    {constraint.kind}: {constraint.name}")
        for problem, count in sorted(plan.problems.items()):
            lines.append(f"    problem: {problem} x{count}")
    return "\n".join(lines)


def _describe_classes(classes: dict[str, int] | None) -> str:
    if classes is None:
        return "not profiled"
    return ", ".join(f"{name} {count}" for name, count in classes.items()) or "no rows"


def _load_state(options: Options) -> dict[str, str]:
    if options.resume and options.state_file.exists():
        data = json.loads(options.state_file.read_text())
        tables: dict[str, str] = data.get("tables", {})
        return tables
    return {}


def _save_state(options: Options, state: dict[str, str]) -> None:
    options.state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = options.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"tables": state}, indent=2))
    tmp.replace(options.state_file)


def _table_exists(conn: psycopg.Connection[Any], plan: TablePlan) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (plan.qualified,)).fetchone()
    return bool(row and row[0])


def _table_has_rows(conn: psycopg.Connection[Any], plan: TablePlan) -> bool:
    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM {plan.qualified})").fetchone()
    return bool(row and row[0])


def prepare_target(run: Run, conn: psycopg.Connection[Any], state: dict[str, str]) -> list[str]:
    """Create or empty the tables still to copy; return the foreign keys to re-add (existing)."""
    options = run.options
    pending = [p for p in run.plans if state.get(p.label) is None]
    occupied = [p.label for p in pending if _table_exists(conn, p) and _table_has_rows(conn, p)]
    if occupied and not (options.truncate or options.resume):
        raise MigrationError(
            "target tables are not empty (use --truncate to replace their data, or --resume): "
            + ", ".join(occupied)
        )
    if occupied or options.mode == "existing":
        # Data would be replaced, or foreign keys dropped: only for sources proven sound. New
        # empty tables are created at once; no chunk commits before its check (copy_tables).
        await_integrity(run)
    readd_fks: list[str] = []
    with conn.transaction():
        for schema in sorted({p.schema for p in pending}):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        if options.mode == "existing":
            readd_fks = _drop_foreign_keys(conn, run.plans)
            if pending:
                conn.execute("TRUNCATE " + ", ".join(p.qualified for p in pending))
        else:
            for plan in pending:
                conn.execute(f"DROP TABLE IF EXISTS {plan.qualified} CASCADE")
                assert plan.create_sql is not None
                conn.execute(plan.create_sql)
    return readd_fks


def _drop_foreign_keys(conn: psycopg.Connection[Any], plans: list[TablePlan]) -> list[str]:
    """Existing mode: foreign keys touching migrated tables are dropped and re-added after copy."""
    oids = [p.qualified for p in plans]
    rows = conn.execute(
        """
        SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c
        WHERE c.contype = 'f'
          AND (c.conrelid = ANY(%(t)s::regclass[]) OR c.confrelid = ANY(%(t)s::regclass[]))
        """,
        {"t": oids},
    ).fetchall()
    statements = []
    for table, name, definition in rows:
        conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {quote_ident(name)}")
        statements.append(f"ALTER TABLE {table} ADD CONSTRAINT {quote_ident(name)} {definition}")
    return statements


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
                _save_state(options, state)
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
            source, Path(plan.source_path), conn, table, pk_of, run.options.chunk_rows, excluded={}
        )
    finally:
        conn.close()
    with psycopg.connect(run.options.target_url, autocommit=True) as target:
        target.execute(f"DROP TABLE IF EXISTS {plan.qualified} CASCADE")
        assert new.create_sql is not None
        target.execute(new.create_sql)
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


class KeyBuilder:
    """Keys and indexes of each table, on threads, started as soon as the table is copied.

    `on_key(plan)` runs as soon as a table's primary key exists (before its other indexes):
    verification reads the target in key order, so it can start while the indexes build. A table
    copied before the others builds while they still copy."""

    def __init__(
        self, run: Run, target_url: str, on_key: Callable[[TablePlan], None] | None = None
    ) -> None:
        self.run = run
        self.target_url = target_url
        self.on_key = on_key
        self.threads = ThreadPoolExecutor(max_workers=max(1, run.options.jobs))
        self.builds: dict[str, Future[None]] = {}

    def start(self, plan: TablePlan) -> None:
        if plan.label not in self.builds:
            self.builds[plan.label] = self.threads.submit(self._build, plan)

    def _build(self, plan: TablePlan) -> None:
        started = time.perf_counter()
        keys = [c for c in plan.constraints if c.kind == "primary_key"]
        others = [c for c in plan.constraints if c.kind not in ("primary_key", "foreign_key")]
        # A quarter gigabyte for the index sorts: the benchmark's largest (1M rows of a bigint
        # and a text) then sorts in memory, 2.0 instead of 2.3-2.4 core-s with parallel workers.
        options = f"-c maintenance_work_mem={INDEX_BUILD_MEMORY}"
        with psycopg.connect(self.target_url, autocommit=True, options=options) as conn:
            for constraint in keys:
                conn.execute(constraint.sql)
            if self.on_key is not None:
                self.on_key(plan)
            # Before the other indexes (it waits for an index build, and plain indexes need no
            # statistics of their own): the last index, which PostgreSQL may build with
            # parallel workers, is then what finishes the run, not ANALYZE on one core.
            conn.execute(f"ANALYZE {plan.qualified}")
            for constraint in others:
                conn.execute(constraint.sql)
            _set_sequence(conn, plan)
        phases = self.run.outcomes[plan.label].phases
        phases["constraints_s"] = round(time.perf_counter() - started, 3)

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)


def add_constraints(
    run: Run, state: dict[str, str], readd_fks: list[str], builder: KeyBuilder
) -> None:
    """Keys and indexes of the tables the builder has not started yet, then (all built)
    foreign keys."""
    target_url = builder.target_url
    todo = [p for p in run.plans if state.get(p.label) == "copied"]
    ready = {p.label for p in run.plans} - {p.label for p in todo}
    if builder.on_key is not None:
        for plan in run.plans:
            if plan.label in ready:  # resumed: constrained by an earlier run
                builder.on_key(plan)
    for plan in todo:
        builder.start(plan)
    for plan in todo:
        builder.builds[plan.label].result()
    with psycopg.connect(target_url, autocommit=True) as conn:
        for plan in todo:
            for constraint in plan.constraints:
                if constraint.kind == "foreign_key":
                    _add_foreign_key(conn, run.outcomes[plan.label], constraint.sql)
        for statement in readd_fks:
            _add_foreign_key(conn, None, statement)
    for plan in todo:
        state[plan.label] = "constrained"
    _save_state(run.options, state)


def _add_foreign_key(
    conn: psycopg.Connection[Any], outcome: TableOutcome | None, statement: str
) -> None:
    try:
        conn.execute(statement)
    except psycopg.errors.ForeignKeyViolation as exc:
        # Children of rejected parent rows: keep the constraint for new writes, report the rows.
        conn.execute(statement + " NOT VALID")
        message = f"foreign key added NOT VALID: {str(exc).splitlines()[0]}"
        log.warning("foreign_key_not_validated", statement=statement, error=str(exc))
        if outcome is not None:
            outcome.constraint_problems.append(message)
        else:
            raise MigrationError(message) from exc


def _set_sequence(conn: psycopg.Connection[Any], plan: TablePlan) -> None:
    """Move the identity/serial sequence past the copied ids so inserts without an id work."""
    if plan.identity_column is None:
        return
    column = quote_ident(plan.identity_column)
    conn.execute(
        f"""
        SELECT setval(seq, COALESCE(m, 1), m IS NOT NULL)
        FROM (SELECT pg_get_serial_sequence(%s, %s) AS seq,
                     (SELECT max({column}) FROM {plan.qualified}) AS m) s
        WHERE seq IS NOT NULL
        """,
        (plan.qualified, plan.identity_column),
    )


SideWork = dict["Future[Digest]", tuple[str, str, int]]


def _verify_chunks(
    plan: TablePlan,
) -> list[tuple[int, tuple[int, int], tuple[int | None, int | None]]]:
    ranges = pg_ranges(plan)
    chunks = plan.chunks if len(ranges) > 1 else [(0, -1)]
    return [
        (index, chunk, bounds)
        for index, (chunk, bounds) in enumerate(zip(chunks, ranges, strict=True))
    ]


def digested_by_copy(plan: TablePlan) -> bool:
    """The copy computes this table's source-side digest from its own scan (columnar.py)."""
    return columnar.digested_by_copy(plan) and len(_verify_chunks(plan)) == len(plan.chunks)


def submit_sqlite_digests(run: Run, pool: ProcessPoolExecutor) -> SideWork:
    """The source side of verification, for the tables whose copy does not compute it:
    independent of the target, so it can start at once."""
    work: SideWork = {}
    for plan in run.plans:
        if not digested_by_copy(plan):
            for index, chunk, _ in _verify_chunks(plan):
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
        for index, chunk, _ in _verify_chunks(plan):
            if (plan.label, index) not in have:
                work[pool.submit(sqlite_digest, plan, chunk)] = (plan.label, "sqlite", index)


def submit_postgres_digests(
    run: Run, plan: TablePlan, pool: ProcessPoolExecutor, threads: ThreadPoolExecutor
) -> SideWork:
    """The target side of one table; row-text tables are computed by the server, so threads
    only wait for them."""
    executor: Executor = threads if computed_by_server(plan) else pool
    work: SideWork = {}
    for index, _, bounds in _verify_chunks(plan):
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
                        "collation": c.collation,
                        "classes": c.classes,
                        "rule": c.note,
                    }
                    for c in plan.columns
                ],
                "key": list(plan.key),
                "hash_mode": "ordered" if plan.key else "multiset",
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
        "rows_source": sum(p.rows for p in run.plans),
        "rows_rejected": sum(sum(o.rejects.values()) for o in run.outcomes.values()),
        "verified": all(o.verified for o in run.outcomes.values()),
        "exit_code": exit_code,
    }


def _exit_code(run: Run) -> int:
    options = run.options
    verified = all(o.verified for o in run.outcomes.values()) if options.verify else True
    problems = any(
        o.rejects or o.constraint_problems or o.plan.problems for o in run.outcomes.values()
    )
    if not verified:
        return 1
    if problems and not options.allow_rejects:
        return 1
    return 0


def _write_report(run: Run, exit_code: int) -> dict[str, Any]:
    report = build_report(run, exit_code)
    if run.options.report_path is not None:
        run.options.report_path.parent.mkdir(parents=True, exist_ok=True)
        run.options.report_path.write_text(json.dumps(report, indent=2, default=str))
    return report


def migrate(
    options: Options,
    pool: ProcessPoolExecutor | None = None,
    snapshots: Mapping[str, Future[Path]] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run a whole migration; returns (exit code, report). `pool`: workers started by the
    caller (`workers.start_pool`), shut down here; `snapshots`: the sources' snapshots the
    caller started (`snapshot.start_snapshots`)."""
    run = Run(options)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    with pool or start_pool(options.jobs) as pool:
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
                print(describe_plan(run.plans), file=sys.stdout)
                return 0, _write_report(run, 0)
            state = _load_state(options)
            if not options.resume:
                state = {}
                _save_state(options, state)
            else:  # tables copied by the earlier run keep their refused rows out of verification
                parts = sorted((options.work_dir / "rejects").glob("*.jsonl"))
                refusals = load_refusals(*parts)
                apply_refusals(run, {k: v for k, v in refusals.items() if state.get(k) is not None})
            with _phase(run, "prepare"):
                readd_fks = prepare_target(run, conn, state)
        _copy_constrain_verify(run, state, readd_fks, pool)
    code = _exit_code(run)
    return code, _write_report(run, code)


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


def apply_refusals(run: Run, refusals: dict[str, dict[int, str]]) -> None:
    """Rows the target refused in an earlier run stay out of the source side, as they did then."""
    for plan in run.plans:
        if plan.label in refusals:
            plan.excluded_rowids.update(refusals[plan.label])
            run.refused_tables.add(plan.label)


def verify_only(options: Options) -> tuple[int, dict[str, Any]]:
    """`domos migrate verify`: re-plan from fresh snapshots and compare, writing nothing."""
    run = Run(options)
    options.work_dir.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(options.target_url, autocommit=True) as conn:
        with _phase(run, "plan"):
            prepare_plans(run, conn if options.mode == "existing" else None)
        missing = [p.label for p in run.plans if not _table_exists(conn, p)]
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
    return code, _write_report(run, code)
