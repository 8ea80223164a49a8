"""runtime.db.schema_gate without a database: the comparison, the wait loop, its signals, and
what a waiting monitor's health check says."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from runtime import metrics
from runtime.db import schema_gate
from runtime.db.migrations import MigrationStatus, State
from runtime.db.schema_gate import SchemaVerdict, compare
from runtime.errors import DatabaseUnavailable
from runtime.monitor.health import HealthState, evaluate_health

APPLIED_AT = datetime(2026, 12, 1, tzinfo=UTC)


def row(db: str, version: int, name: str, state: State) -> MigrationStatus:
    return MigrationStatus(db, version, name, state, None if state == "pending" else APPLIED_AT)


@pytest.mark.parametrize(
    ("rows", "missing", "unknown", "changed"),
    [
        pytest.param([], (), (), (), id="no migrations at all"),
        pytest.param(
            [row("main", 1, "initial", "applied"), row("useful", 1, "initial", "applied")],
            (),
            (),
            (),
            id="every migration applied",
        ),
        pytest.param(
            [row("main", 8, "rights", "applied"), row("main", 9, "reminders", "pending")],
            ("main/0009_reminders",),
            (),
            (),
            id="behind: the newest not applied",
        ),
        pytest.param(
            [row("main", 1, "initial", "applied"), row("main", 2, "more", "pending")],
            ("main/0002_more",),
            (),
            (),
            id="behind: only the first applied",
        ),
        pytest.param(
            [row("main", 9, "reminders", "applied"), row("main", 10, "newer", "missing")],
            (),
            ("main/0010_newer",),
            (),
            id="ahead: applied by a newer domos",
        ),
        pytest.param(
            [row("main", 9, "reminders", "changed"), row("main", 10, "more", "applied")],
            (),
            (),
            ("main/0009_reminders",),
            id="changed: the file edited after it was applied",
        ),
        pytest.param(
            [
                row("main", 8, "rights", "applied"),
                row("main", 9, "reminders", "pending"),
                row("useful", 3, "newer", "missing"),
            ],
            ("main/0009_reminders",),
            ("useful/0003_newer",),
            (),
            id="behind in one database, ahead in another",
        ),
    ],
)
def test_compare(
    rows: list[MigrationStatus],
    missing: tuple[str, ...],
    unknown: tuple[str, ...],
    changed: tuple[str, ...],
) -> None:
    verdict = compare(rows, ["main", "advert", "useful"])
    assert (verdict.missing, verdict.unknown, verdict.changed) == (missing, unknown, changed)
    assert verdict.behind == bool(missing)
    assert verdict.ahead == bool(unknown)


def test_a_database_never_upgraded_is_uninitialised_not_behind() -> None:
    rows = [
        row("main", 9, "reminders", "applied"),
        row("advert", 1, "initial", "pending"),
        row("advert", 2, "more", "pending"),
        row("contract", 1, "initial", "pending"),
    ]
    verdict = compare(rows, ["main", "advert", "contract", "useful"])
    assert not verdict.behind
    assert verdict.uninitialised == ("advert", "contract")
    assert [verdict.lacking(name) for name in verdict.logical_dbs] == [0, 2, 1, 0]


def test_the_description_names_the_migrations_and_the_command() -> None:
    verdict = SchemaVerdict(("main",), missing=("main/0009_reminders", "main/0010_more"))
    assert verdict.describe() == (
        "the database lacks 2 migration(s) of this code (main/0009_reminders, main/0010_more):"
        " run `domos db upgrade`"
    )
    assert verdict.count("missing", "main") == 2
    assert verdict.count("missing", "advert") == 0


class Checks:
    """Stands in for `schema_gate.check`: answers from a script, one entry per call."""

    def __init__(self, *answers: SchemaVerdict | Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, db: Any, logical_dbs: Any, **kwargs: Any) -> SchemaVerdict:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


DBS = ("main", "useful")
BEHIND = SchemaVerdict(DBS, missing=("main/0009_reminders",))
BEHIND_MORE = SchemaVerdict(DBS, missing=("main/0009_reminders", "useful/0003_x"))
CURRENT = SchemaVerdict(DBS)
AHEAD = SchemaVerdict(DBS, unknown=("main/0010_newer",))


def gauge(metric: Any, logical_db: str) -> float:
    value: float = metric.labels(logical_db=logical_db)._value.get()
    return value


async def wait(**kwargs: Any) -> tuple[SchemaVerdict | None, list[dict[str, Any]]]:
    stop = kwargs.pop("stop", None) or asyncio.Event()
    with capture_logs() as logs:
        verdict = await asyncio.wait_for(
            schema_gate.wait_for_schema(
                object(),  # type: ignore[arg-type]
                stop=stop,
                recheck_s=0.01,
                logical_dbs=DBS,
                **kwargs,
            ),
            timeout=5,
        )
    return verdict, logs


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(*answers: SchemaVerdict | Exception) -> Checks:
        fake = Checks(*answers)
        monkeypatch.setattr(schema_gate, "check", fake)
        return fake

    return install


async def test_behind_waits_reports_once_per_stretch_then_goes_on(checks: Any) -> None:
    fake = checks(BEHIND, BEHIND, BEHIND, BEHIND_MORE, BEHIND_MORE, CURRENT)
    reasons: list[str] = []
    verdict, logs = await wait(on_wait=reasons.append)
    assert verdict == CURRENT
    assert fake.calls == 6
    behind = [line for line in logs if line["event"] == "schema_behind"]
    # Once for the first stretch, once more when the set of missing migrations changed.
    assert [line["missing"] for line in behind] == [list(BEHIND.missing), list(BEHIND_MORE.missing)]
    assert all(line["log_level"] == "error" for line in behind)
    assert all(line["command"] == "domos db upgrade" for line in behind)
    [ready] = [line for line in logs if line["event"] == "schema_ready"]
    assert ready["applied"] == list(BEHIND_MORE.missing)
    assert reasons == [BEHIND.describe()] * 3 + [BEHIND_MORE.describe()] * 2
    assert gauge(metrics.SCHEMA_MIGRATIONS_MISSING, "main") == 0
    assert gauge(metrics.SCHEMA_MIGRATIONS_MISSING, "useful") == 0


async def test_while_behind_the_gauge_counts_the_missing_migrations(checks: Any) -> None:
    checks(BEHIND_MORE)
    stop = asyncio.Event()
    task = asyncio.create_task(wait(stop=stop))
    await asyncio.sleep(0.05)
    assert gauge(metrics.SCHEMA_MIGRATIONS_MISSING, "main") == 1
    assert gauge(metrics.SCHEMA_MIGRATIONS_MISSING, "useful") == 1
    stop.set()
    verdict, logs = await task
    assert verdict is None  # stopped while waiting
    assert [line["event"] for line in logs].count("schema_behind") == 1


async def test_ahead_runs_at_once_with_one_warning(checks: Any) -> None:
    fake = checks(AHEAD)
    verdict, logs = await wait()
    assert verdict == AHEAD
    assert fake.calls == 1
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("schema_ahead_of_code", "warning")
    ]
    assert logs[0]["unknown"] == ["main/0010_newer"]
    assert gauge(metrics.SCHEMA_MIGRATIONS_UNKNOWN, "main") == 1


async def test_current_runs_at_once_silently(checks: Any) -> None:
    checks(CURRENT)
    verdict, logs = await wait()
    assert verdict == CURRENT
    assert logs == []


async def test_a_database_never_upgraded_runs_with_one_warning(checks: Any) -> None:
    fresh = SchemaVerdict(DBS, uninitialised=("useful",), uninitialised_counts=(2,))
    checks(fresh)
    verdict, logs = await wait()
    assert verdict == fresh
    assert [(line["event"], line["log_level"]) for line in logs] == [
        ("schema_not_initialised", "warning")
    ]
    assert gauge(metrics.SCHEMA_MIGRATIONS_MISSING, "useful") == 2


async def test_a_database_that_cannot_be_asked_is_asked_again(checks: Any) -> None:
    checks(*[DatabaseUnavailable("postgres: down")] * 3, CURRENT)
    reasons: list[str] = []
    verdict, logs = await wait(on_wait=reasons.append)
    assert verdict == CURRENT
    assert [line["event"] for line in logs] == ["schema_check_failed"]  # once per stretch
    assert reasons == ["the schema could not be checked: DatabaseUnavailable: postgres: down"] * 3


async def test_stop_on_signals_sets_stop_and_keeps_a_servers_handler() -> None:
    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        stop = asyncio.Event()
        with schema_gate.stop_on_signals(stop):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 5)
        assert seen == [signal.SIGTERM]  # uvicorn's handler still learns of the stop
        restored = signal.getsignal(signal.SIGTERM)
        assert callable(restored)
        assert restored.__name__ == "<lambda>"  # type: ignore[union-attr]
    finally:
        signal.signal(signal.SIGTERM, before)


async def test_stop_on_signals_interrupts_neither_python_nor_asyncio_run() -> None:
    # Under asyncio.run (as here and in every program) SIGINT's handler is the Runner's, which
    # would cancel the main task; Python's own would raise KeyboardInterrupt.
    for handler in (signal.getsignal(signal.SIGINT), signal.default_int_handler):
        before = signal.signal(signal.SIGINT, handler)
        try:
            stop = asyncio.Event()
            with schema_gate.stop_on_signals(stop):
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.wait_for(stop.wait(), 5)
            assert signal.getsignal(signal.SIGINT) is handler
        finally:
            signal.signal(signal.SIGINT, before)
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


def test_a_monitor_waiting_for_the_schema_is_unhealthy_at_once_and_says_why() -> None:
    state = HealthState(
        monitor="eventsmonitor",
        pid=1,
        owner="o",
        interval_s=60,
        role="waiting_for_schema",
        started_at=100.0,
        heartbeat_at=101.0,
        last_error=BEHIND.describe(),
    )
    verdict = evaluate_health(state, now=101.0, max_age_s=180)
    assert not verdict.healthy
    assert verdict.reason == (
        "waiting for the schema: the database lacks 1 migration(s) of this code"
        " (main/0009_reminders): run `domos db upgrade`"
    )
