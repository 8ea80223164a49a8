"""Failure and contention scenarios: killed connections, locks, claiming, streaming, writers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime.config import Settings
from runtime.db import AsyncDatabase, async_database, sync_database
from runtime.errors import DatabaseUnavailable, LockNotAcquired, TransientError, UniqueViolation
from tests.conftest import database_environ
from tests.integration.db.helpers import OUTBOX, create, create_sync

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def database_settings_pg(pg_domos_url: str, tmp_path: Path) -> Any:
    return Settings.from_env(database_environ("postgres", str(tmp_path), pg_domos_url)).db


@pytest.fixture
async def pg_db(database_settings_pg: Any) -> Any:
    async with async_database(database_settings_pg) as db:
        yield db


@pytest.mark.postgres
async def test_terminated_connections_lose_and_double_nothing(
    pg_db: AsyncDatabase, pg_domos_url: str
) -> None:
    await pg_db.executescript("CREATE TABLE writes (k TEXT PRIMARY KEY, w INTEGER)", db="main")
    workers, per_worker = 4, 120
    uncertain: list[str] = []
    stop = asyncio.Event()

    async def worker(w: int) -> None:
        for i in range(per_worker):
            key = f"{w}-{i}"
            try:
                await pg_db.execute("INSERT INTO writes (k, w) VALUES (?, ?)", (key, w))
            except DatabaseUnavailable:
                # Unknown outcome: the caller retries idempotently, keyed by k.
                uncertain.append(key)
                while True:
                    with contextlib.suppress(DatabaseUnavailable):
                        await pg_db.execute(
                            "INSERT INTO writes (k, w) VALUES (?, ?) ON CONFLICT (k) DO NOTHING",
                            (key, w),
                        )
                        break
            # Reads in the mix exercise checkout of connections killed while idle; a read cut
            # off mid-flight is reported, not retried, like any statement.
            with contextlib.suppress(DatabaseUnavailable):
                await pg_db.fetchval("SELECT count(*) FROM writes WHERE w = ?", (w,))

    async def killer() -> int:
        killed = 0
        async with await psycopg.AsyncConnection.connect(pg_domos_url, autocommit=True) as conn:
            # Kill rounds while the workers are busy. The first comes at once: the workers can
            # be done within 0.1 s, and the pool's open connections are there to kill anyway.
            for _ in range(8):
                cursor = await conn.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                row = await cursor.fetchone()
                killed += row[0] if row else 0
                await asyncio.sleep(0.1)
                if stop.is_set():
                    break
        return killed

    killer_task = asyncio.create_task(killer())
    try:
        await asyncio.gather(*(worker(w) for w in range(workers)))
    except UniqueViolation:  # pragma: no cover - the failure this test exists to catch
        pytest.fail("a first INSERT hit its own earlier write: a write was retried blindly")
    finally:
        stop.set()
        killed = await killer_task

    print(f"killed={killed} uncertain={len(uncertain)} stats={await pg_db.stats()}")
    assert killed > 0
    assert await pg_db.fetchval("SELECT count(*) FROM writes") == workers * per_worker
    assert await pg_db.fetchval("SELECT count(DISTINCT k) FROM writes") == workers * per_worker
    stats = await pg_db.stats()
    assert stats["pool_size"] >= 1
    assert await pg_db.fetchval("SELECT 1") == 1


@pytest.mark.postgres
async def test_unreachable_postgres_is_unavailable_without_password(tmp_path: Path) -> None:
    url = "postgresql://domos:s3cret-pw@127.0.0.1:1/domos"
    environ = {**database_environ("postgres", str(tmp_path), url), "DB_POOL_TIMEOUT_S": "0.5"}
    db = async_database(Settings.from_env(environ))
    with pytest.raises(DatabaseUnavailable) as error:
        await db.open()
    assert "127.0.0.1:1" in str(error.value)
    assert "s3cret-pw" not in str(error.value)
    sync = sync_database(Settings.from_env(environ))
    with pytest.raises(DatabaseUnavailable):
        sync.open()


async def test_unopenable_sqlite_location_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = Settings.from_env(database_environ("sqlite", str(blocker / "data"))).db
    with pytest.raises(DatabaseUnavailable):
        await async_database(settings).open()


@pytest.mark.postgres
async def test_a_lock_whose_session_dies_reports_itself_lost(
    pg_db: AsyncDatabase, pg_domos_url: str, database_settings_pg: Any
) -> None:
    async with pg_db.singleton_lock("tsmonitor") as lock:
        await lock.ensure_held()
        with psycopg.connect(pg_domos_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
        assert killed == (1,)
        with pytest.raises(LockNotAcquired, match="was lost"):
            await lock.ensure_held()
        # The lock is free for another process at once: the holder had to be told.
        other = async_database(database_settings_pg)
        async with other, other.singleton_lock("tsmonitor") as taken:
            await taken.ensure_held()


async def test_singleton_lock_has_one_holder(database_settings: Any) -> None:
    first = async_database(database_settings)
    second = async_database(database_settings)
    async with first, second:
        async with first.singleton_lock("tsmonitor"):
            with pytest.raises(LockNotAcquired):
                async with second.singleton_lock("tsmonitor"):
                    pass  # pragma: no cover
            async with second.singleton_lock("other-name"):
                pass
        async with second.singleton_lock("tsmonitor"):
            pass

        holders = 0

        async def contend() -> None:
            nonlocal holders
            with contextlib.suppress(LockNotAcquired):
                async with first.singleton_lock("race"):
                    holders += 1
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(contend() for _ in range(5)))
        assert holders == 1


_HOLD_LOCK = """
import sys, time
from runtime.config import Settings
from runtime.db import sync_database
with sync_database(Settings.from_env()) as db, db.singleton_lock("monitor"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_singleton_lock_across_processes_released_on_death(
    database_environ_vars: dict[str, str],
) -> None:
    env = {**os.environ, **database_environ_vars}
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        # Log lines may come first; wait for the holder to say it has the lock.
        while (line := holder.stdout.readline()) and line.strip() != "held":
            pass
        assert line.strip() == "held"
        with sync_database(Settings.from_env(database_environ_vars)) as db:
            with pytest.raises(LockNotAcquired):
                db.__class__.singleton_lock(db, "monitor").__enter__()
            holder.kill()  # a crash, not a clean release
            holder.wait(timeout=10)
            for _ in range(50):  # PostgreSQL notices the dead session within moments
                try:
                    with db.singleton_lock("monitor"):
                        break
                except LockNotAcquired:
                    threading.Event().wait(0.1)
            else:
                pytest.fail("the lock of a killed process was never released")
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


async def test_two_claimers_claim_every_row_exactly_once(database_settings: Any) -> None:
    backlog = 300
    first = async_database(database_settings)
    second = async_database(database_settings)
    async with first, second:
        await create(first, OUTBOX)
        await first.executemany("INSERT INTO outbox (status) VALUES (?)", [("queued",)] * backlog)
        claimed: dict[str, list[int]] = {"a": [], "b": []}

        async def claimer(db: AsyncDatabase, owner: str) -> None:
            while rows := await db.claim(
                "outbox", where="status = ?", params=("queued",), limit=7, owner=owner
            ):
                assert all(row["lease_owner"] == owner for row in rows)
                ids = [row["id"] for row in rows]
                assert ids == sorted(ids)
                claimed[owner].extend(ids)
                for row_id in ids:  # finishing the item clears the lease in the same UPDATE
                    await db.execute(
                        "UPDATE outbox SET status = 'sent', lease_owner = NULL,"
                        " lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
                        (row_id, owner),
                    )

        await asyncio.gather(claimer(first, "a"), claimer(second, "b"))
        everything = claimed["a"] + claimed["b"]
        assert sorted(everything) == list(range(1, backlog + 1))
        assert claimed["a"]
        assert claimed["b"]
        assert await first.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'") == backlog


async def test_expired_lease_lets_another_owner_claim(async_db: Any) -> None:
    await create(async_db, OUTBOX)
    await async_db.executemany("INSERT INTO outbox (status) VALUES (?)", [("queued",)] * 3)
    rows = await async_db.claim("outbox", owner="a", limit=2, lease_s=60, now=T0)
    assert [row["id"] for row in rows] == [1, 2]
    assert rows[0]["lease_expires_at"] == T0 + timedelta(seconds=60)

    during = await async_db.claim("outbox", owner="b", lease_s=60, now=T0 + timedelta(seconds=30))
    assert [row["id"] for row in during] == [3]
    after = await async_db.claim("outbox", owner="b", lease_s=60, now=T0 + timedelta(seconds=61))
    assert [row["id"] for row in after] == [1, 2]
    assert {row["lease_owner"] for row in after} == {"b"}
    assert await async_db.claim("outbox", owner="c", now=T0 + timedelta(seconds=62)) == []


def test_sync_claim_and_validation(sync_db: Any) -> None:
    create_sync(sync_db, OUTBOX)
    sync_db.executemany("INSERT INTO outbox (status) VALUES (?)", [("queued",), ("held",)])
    rows = sync_db.claim("outbox", where="status = ?", params=("queued",), order_by="id DESC")
    assert [row["id"] for row in rows] == [1]
    assert rows[0]["lease_owner"].count(":") == 2  # host:pid:uuid by default
    from runtime.errors import QueryError

    with pytest.raises(QueryError):
        sync_db.claim("outbox; DROP TABLE outbox")
    with pytest.raises(QueryError):
        sync_db.claim("outbox", order_by="id; DELETE FROM outbox")


async def test_iterate_streams_without_loading_everything(
    async_db: Any, pg_server_url: str
) -> None:
    await async_db.executescript("CREATE TABLE big (n INTEGER, pad TEXT)", db="main")
    total = 30_000
    await async_db.executemany(
        "INSERT INTO big (n, pad) VALUES (?, ?)", [(i, "x" * 100) for i in range(total)]
    )
    tracemalloc.start()
    try:
        count = 0
        rows = async_db.iterate("SELECT n, pad FROM big ORDER BY n", batch_size=200)
        async for _row in rows:
            count += 1
            if count == 1000 and async_db.dialect == "postgres":
                # The rows come from a server-side (named) cursor, FETCH by FETCH.
                with psycopg.connect(pg_server_url, autocommit=True) as conn:
                    fetching = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE query LIKE 'FETCH%domos_iter_%'"
                    ).fetchone()
                assert fetching is not None
                assert fetching[0] == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == total
    # All rows as dicts would take over 10 MB; a batch of 200 takes a fraction of one.
    assert peak < 3 * 1024 * 1024


def test_begin_immediate_keeps_two_sqlite_writers_from_busy_errors(tmp_path: Path) -> None:
    environ = {**database_environ("sqlite", str(tmp_path)), "SQLITE_BUSY_TIMEOUT_S": "20"}
    settings = Settings.from_env(environ).db
    setup = sync_database(settings)
    with setup:
        setup.executescript("CREATE TABLE counter (n INTEGER PRIMARY KEY)", db="main")
        setup.execute("INSERT INTO counter (n) VALUES (0)")
    failures: list[BaseException] = []

    def writer() -> None:
        # Read, then write, in one transaction: a deferred transaction would hit SQLITE_BUSY
        # when upgrading its read snapshot; BEGIN IMMEDIATE waits for the write lock instead.
        with sync_database(settings) as db:
            for _ in range(100):
                try:
                    with db.transaction() as tx:
                        current = tx.fetchval("SELECT max(n) FROM counter")
                        tx.execute("INSERT INTO counter (n) VALUES (?)", (current + 1,))
                except (TransientError, UniqueViolation) as exc:
                    failures.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with sync_database(settings) as db:
        assert db.fetchval("SELECT max(n) FROM counter") == 200


@pytest.mark.postgres
async def test_checkout_costs_a_round_trip_only_after_the_server_spoke(
    pg_db: Any, pg_domos_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A silent idle connection is handed out as it is; one the server ended while idle (its
    FATAL notice and EOF wait on the socket) is checked, found dead and replaced."""
    from psycopg_pool import AsyncConnectionPool

    checks = []
    real_check = AsyncConnectionPool.check_connection

    async def counted(conn: Any) -> None:
        checks.append(conn)
        await real_check(conn)

    monkeypatch.setattr(AsyncConnectionPool, "check_connection", counted)
    for _ in range(50):
        assert await pg_db.fetchval("SELECT 1") == 1
    assert checks == []
    with psycopg.connect(pg_domos_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert killed is not None
    assert killed[0] >= 1
    await asyncio.sleep(0.3)  # the notice and the EOF reach the idle sockets
    for _ in range(20):  # every pooled connection was ended: no call may fail
        assert await pg_db.fetchval("SELECT 1") == 1
    assert len(checks) >= 1
