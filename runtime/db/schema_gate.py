"""A program starts work only on the schema its code was written for.

The code knows the migrations under runtime/schema (`runtime.db.migrations.discover`); the database
records the ones applied (`schema_migrations`). At start, before any work, every long-running domos
program (the monitors, the API, the bot, botapi, web) compares the two with `wait_for_schema`:

- **behind**: a migration the code has is not applied (new code deployed, `domos db upgrade`
  forgotten). The program does no work against that schema: it logs `schema_behind` once (error:
  the missing migrations, the command to run), sets `domos_schema_migrations_missing`, re-checks
  every `recheck_s` and goes on by itself once the upgrade is applied (`schema_ready`). It does not
  exit: an exit before supervisord's `startsecs` ends in FATAL (the listener then restarts the
  whole container, for ever), a later one in a restart loop, and neither applies a migration.
  While it waits it is not ready: a monitor's health check fails naming the migrations, the HTTP
  services do not listen yet.
- **ahead**: migrations are applied that the code does not know (a newer domos applied them: the
  code was rolled back, docs/upgrade.md). The program runs, with one warning
  (`schema_ahead_of_code`) and `domos_schema_migrations_unknown`; a rollback must not be blocked.
- **changed**: an applied migration's file differs from what was applied. Runs, one warning:
  `domos db upgrade` refuses it, and waiting would not fix it.
- **not initialised**: a logical database with no migration applied at all (see `compare`).
  Runs as before, one warning (`schema_not_initialised`); the gauge counts its migrations.

A database that cannot be asked (an outage while waiting) is retried at the same pace, as the
monitors retry their singleton lock (one warning per stretch); a database that cannot be opened
at start is the DB layer's business, as before (the program exits and supervisord starts it
again).

Not gated: `domos db …` (it is the fix), `domos migrate`, `domos backup`/`restore` and the backup
schedule (they copy whatever schema there is, and restoring the backup from before an upgrade is
the way back), `domos web migrate`/`createstaff` (Django's own tables, which Django's migrations
keep), monitors of a package other than `monitors` (tests' own, with no domain tables).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from runtime import metrics
from runtime.db.base import AsyncDatabase
from runtime.db.migrations import MigrationStatus, status
from runtime.db.schema_recheck import DEFAULT_RECHECK_S as DEFAULT_RECHECK_S
from runtime.errors import DatabaseError
from runtime.logical_databases import DOMAIN_DATABASES

log = structlog.get_logger("runtime.db.schema")

#: What the operator runs to bring the schema to the code.
UPGRADE_COMMAND = "domos db upgrade"
#: The logical databases each program works on: it waits for their migrations only, so a
#: partial `domos db upgrade --db …` of another one does not hold it up. The monitors (one
#: entry for all: parse_messages alone touches five) and the admin (every domain table) need
#: them all.
PROGRAM_DATABASES: dict[str, tuple[str, ...]] = {
    "api": ("main", "advert", "contract"),
    "bot": ("main", "useful"),
    "botapi": ("main",),
    "web": DOMAIN_DATABASES,
    "monitors": DOMAIN_DATABASES,
}


def label(row: MigrationStatus) -> str:
    """`main/0009_event_reminder_progress`: a migration as logs and messages name it."""
    return f"{row.logical_db}/{row.version:04d}_{row.name}"


@dataclass(frozen=True)
class SchemaVerdict:
    """The database's schema against the code's migrations."""

    logical_dbs: tuple[str, ...]
    #: In the code, not applied: the program must not work (run `domos db upgrade`).
    missing: tuple[str, ...] = ()
    #: Applied, unknown to the code: a newer domos applied them (a code rollback).
    unknown: tuple[str, ...] = ()
    #: Applied from a file that has changed since.
    changed: tuple[str, ...] = ()
    #: Logical databases with no migration applied at all (their migrations are not in
    #: `missing`): never upgraded, or the settings point at the wrong database.
    uninitialised: tuple[str, ...] = ()
    #: How many of the code's migrations each uninitialised database lacks.
    uninitialised_counts: tuple[int, ...] = ()

    @property
    def behind(self) -> bool:
        return bool(self.missing)

    @property
    def ahead(self) -> bool:
        return bool(self.unknown)

    def count(self, which: str, logical_db: str) -> int:
        names: tuple[str, ...] = getattr(self, which)
        return sum(1 for name in names if name.split("/", 1)[0] == logical_db)

    def lacking(self, logical_db: str) -> int:
        """The code's migrations `logical_db` lacks, whether behind or never upgraded."""
        extra = dict(zip(self.uninitialised, self.uninitialised_counts, strict=True))
        return self.count("missing", logical_db) + extra.get(logical_db, 0)

    def describe(self) -> str:
        """One line for a health check or an error: what is missing and what to run."""
        if not self.behind:
            return "the schema has every migration of this code"
        return (
            f"the database lacks {len(self.missing)} migration(s) of this code"
            f" ({', '.join(self.missing)}): run `{UPGRADE_COMMAND}`"
        )


def compare(statuses: Iterable[MigrationStatus], logical_dbs: Sequence[str]) -> SchemaVerdict:
    """The verdict from `runtime.db.migrations.status` rows (pending: in the code only;
    missing: in the database only). Pure.

    A logical database with no migration applied at all is uninitialised, not behind: the
    gate is for the gap between two releases (this code over the schema of an older one). A
    database never upgraded is a new installation that skipped `domos db upgrade` (which
    `domos run` and compose's `migrate` do first) or settings naming the wrong database
    (a mistyped DOMOS_DATA_DIR), where telling the program to wait for an upgrade would
    invite one in the wrong place; the program runs as before, with a warning and the gauge."""
    rows = list(statuses)
    states: dict[str, set[str]] = {}
    for row in rows:
        states.setdefault(row.logical_db, set()).add(row.state)
    empty = [name for name in logical_dbs if states.get(name) == {"pending"}]

    def pick(state: str) -> tuple[str, ...]:
        return tuple(
            label(row) for row in rows if row.state == state and row.logical_db not in empty
        )

    return SchemaVerdict(
        logical_dbs=tuple(logical_dbs),
        missing=pick("pending"),
        unknown=pick("missing"),
        changed=pick("changed"),
        uninitialised=tuple(empty),
        uninitialised_counts=tuple(
            sum(1 for row in rows if row.logical_db == name) for name in empty
        ),
    )


async def check(
    db: AsyncDatabase,
    logical_dbs: Sequence[str] = DOMAIN_DATABASES,
    *,
    schema_root: Path | None = None,
) -> SchemaVerdict:
    """Ask the database once; changes nothing."""
    return compare(await status(db, logical_dbs, schema_root=schema_root), logical_dbs)


def export(verdict: SchemaVerdict) -> None:
    """The verdict as gauges, one series per logical database (0 where all is well)."""
    for logical_db in verdict.logical_dbs:
        metrics.SCHEMA_MIGRATIONS_MISSING.labels(logical_db=logical_db).set(
            verdict.lacking(logical_db)
        )
        metrics.SCHEMA_MIGRATIONS_UNKNOWN.labels(logical_db=logical_db).set(
            verdict.count("unknown", logical_db)
        )


async def wait_for_schema(
    db: AsyncDatabase,
    *,
    stop: asyncio.Event,
    recheck_s: float = DEFAULT_RECHECK_S,
    logical_dbs: Sequence[str] = DOMAIN_DATABASES,
    schema_root: Path | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> SchemaVerdict | None:
    """Return once the schema has every migration of the code (ahead or changed: at once, with
    a warning); None if `stop` was set first. While behind (or while the database cannot be
    asked), `on_wait(reason)` is called after each check: the caller's health state."""
    started = time.monotonic()
    reported: tuple[str, ...] | None = None
    failing = False
    while not stop.is_set():
        try:
            verdict = await check(db, logical_dbs, schema_root=schema_root)
        except DatabaseError as exc:
            if not failing:  # once per stretch: the DB layer counts and logs each error
                log.warning(
                    "schema_check_failed",
                    error=str(exc),
                    error_type=type(exc).__name__,
                    retry_in_s=recheck_s,
                )
                failing = True
            if on_wait is not None:
                on_wait(f"the schema could not be checked: {type(exc).__name__}: {exc}")
        else:
            failing = False
            export(verdict)
            if not verdict.behind:
                report_ready(verdict, waited_s=time.monotonic() - started, waited=reported)
                return verdict
            if verdict.missing != reported:  # once per stretch, again if the set changes
                report_behind(verdict, recheck_s=recheck_s)
                reported = verdict.missing
            if on_wait is not None:
                on_wait(verdict.describe())
        await _sleep(stop, recheck_s)
    return None


def report_behind(verdict: SchemaVerdict, *, recheck_s: float | None) -> None:
    """The one error line of a program that will not work on this schema (`recheck_s` None:
    it gives up instead of waiting, as `domos monitor --once` does)."""
    then = (
        f"waiting, re-checked every {recheck_s:g} s; no work is done until they are applied"
        if recheck_s is not None
        else "nothing was done"
    )
    log.error(
        "schema_behind",
        missing=list(verdict.missing),
        command=UPGRADE_COMMAND,
        hint=f"this code needs these migrations: run `{UPGRADE_COMMAND}` (docs/upgrade.md); "
        + then,
    )


def report_ready(
    verdict: SchemaVerdict, *, waited_s: float = 0.0, waited: tuple[str, ...] | None = None
) -> None:
    """`schema_ready` after a wait; one warning each when ahead of the code or changed."""
    if waited is not None:
        log.info("schema_ready", waited_s=round(waited_s, 3), applied=list(waited))
    if verdict.ahead:
        log.warning(
            "schema_ahead_of_code",
            unknown=list(verdict.unknown),
            hint="a newer domos applied these migrations (a code rollback); running, "
            "see docs/upgrade.md, Rolling back",
        )
    if verdict.uninitialised:
        log.warning(
            "schema_not_initialised",
            logical_dbs=list(verdict.uninitialised),
            command=UPGRADE_COMMAND,
            hint=f"no migration was ever applied to these databases: a new installation needs "
            f"`{UPGRADE_COMMAND}`; otherwise DATABASE_URL or DOMOS_DATA_DIR names the wrong "
            "database. Running; queries on their tables fail until then",
        )
    if verdict.changed:
        log.warning(
            "schema_migrations_changed",
            changed=list(verdict.changed),
            hint="applied migration files were edited since; running (`domos db status`)",
        )


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


@contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` while the block runs (the program waits for the schema, and
    supervisord may stop it meanwhile), then the handlers before it are put back. A handler a
    server installed before (uvicorn's, which marks it to exit) is called too; Python's and
    asyncio.run's SIGINT handlers are not (KeyboardInterrupt, a cancelled main task)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (an app under a test client)
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(stop.set)
        before = previous.get(signum)
        if callable(before) and not _python_default(before):
            before(signum, frame)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[int(sig)] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _python_default(handler: Any) -> bool:
    """Python's SIGINT handler, or asyncio.run's (it cancels the main task): the wait ends by
    `stop`, and the program then stops as it does after any wait."""
    if handler is signal.default_int_handler:
        return True
    owner = getattr(getattr(handler, "func", None), "__self__", None)
    return isinstance(owner, asyncio.Runner)


def wait_before_serving(
    settings: Any, *, logical_dbs: Sequence[str], recheck_s: float = DEFAULT_RECHECK_S
) -> bool:
    """For the programs that hand over to gunicorn (botapi, web): wait in this process, before
    any worker exists, with a database of its own; False if stopped meanwhile."""
    from runtime.db.factory import async_database

    async def run() -> bool:
        stop = asyncio.Event()
        with stop_on_signals(stop):
            async with async_database(settings, name="schema-check") as db:
                verdict = await wait_for_schema(
                    db, stop=stop, recheck_s=recheck_s, logical_dbs=logical_dbs
                )
        return verdict is not None

    return asyncio.run(run())
