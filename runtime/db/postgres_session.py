"""What both PostgreSQL facades share: connection options, pool checks, schemas, advisory locks.

ONE psycopg_pool per process; the logical database selects the schema. Connections are in
autocommit, return rows as dicts, dump dict/list as JSONB and run with TimeZone=UTC. Each pooled
connection remembers the schema its search_path points at, so a call only pays a
`SET search_path` round trip when it uses a different logical database than the previous user of
the connection (the SET runs outside any transaction, so a rollback never undoes it).

Broken connections: the pool checks each connection on checkout and replaces dead ones,
reconnecting with backoff. The check costs a round trip only when the server has spoken on the idle
connection (`server_spoke`): a server that ends a connection says so (a FATAL notice, then EOF),
so a silent socket needs no `check_connection` - which would cost every request a round trip.
A call is retried on a fresh connection only when the failure
happened before any of its own SQL was sent (the SET search_path step); a connection lost while the
caller's statement runs raises DatabaseUnavailable, because the statement may have been committed.
"""

from __future__ import annotations

import hashlib
import select
import time
import uuid
import weakref
from typing import Any

import psycopg
import structlog
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

import runtime.db.claim as claim_sql
from runtime.config import DatabaseSettings, mask_url_password
from runtime.db.base import Claim, Row, check_logical_db
from runtime.db.errors import postgres_refusal
from runtime.db.types import postgres_adapters
from runtime.errors import DatabaseRefused, DatabaseUnavailable, LockNotAcquired
from runtime.logical_databases import LOGICAL_DATABASES

log = structlog.get_logger("runtime.db.postgres")

SET_SEARCH_PATH = {
    logical.name: pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(logical.pg_schema))
    for logical in LOGICAL_DATABASES.values()
}
_SCHEMA_OF = {logical.name: logical.pg_schema for logical in LOGICAL_DATABASES.values()}
TRY_LOCK = "SELECT pg_try_advisory_lock(%s) AS held"
UNLOCK = "SELECT pg_advisory_unlock(%s)"


def schema_of(db: str) -> str:
    try:
        return _SCHEMA_OF[db]
    except KeyError:
        check_logical_db(db)
        raise


def lock_lost(name: str) -> LockNotAcquired:
    return LockNotAcquired(f"singleton lock {name!r} was lost: its session ended")


def check_lock_taken(row: Row | None, name: str) -> None:
    if not (row and row["held"]):
        raise LockNotAcquired(f"singleton lock {name!r} is held by another process")


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock from a lock name."""
    digest = hashlib.blake2b(f"domos:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def connection_kwargs(conninfo: str) -> dict[str, Any]:
    """Connection options of every domos connection (pooled or dedicated)."""
    options = conninfo_to_dict(conninfo).get("options") or ""
    return {
        "autocommit": True,
        "row_factory": dict_row,
        "context": postgres_adapters(),
        # Sessions in UTC so timestamptz values come back as UTC datetimes.
        "options": f"{options} -c TimeZone=UTC".strip(),
    }


def cursor_name() -> str:
    return f"domos_iter_{uuid.uuid4().hex}"


def server_spoke(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle pooled connection has input waiting (or is closed): nothing arrives on
    one unless the server ended it or sent a notification."""
    if conn.closed:
        return True
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


async def check_async(conn: psycopg.AsyncConnection[Any]) -> None:
    if server_spoke(conn):
        await AsyncConnectionPool.check_connection(conn)


def check_sync(conn: psycopg.Connection[Any]) -> None:
    if server_spoke(conn):
        ConnectionPool.check_connection(conn)


class PostgresCommon:
    """State and decisions of both facades; each adds only its (a)waiting calls."""

    settings: DatabaseSettings
    name: str
    dialect = "postgres"
    _pool: AsyncConnectionPool[Any] | ConnectionPool[Any] | None

    def _init_common(self) -> None:
        self._conninfo = self.settings.require_postgres_url()
        self._masked_url = mask_url_password(self._conninfo)
        # Which schema each live connection's search_path points at.
        self._search_path: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._pool = None

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"postgres: cannot connect to {self._masked_url} within "
            f"{self.settings.pool_timeout_s:g}s ({type(exc).__name__})"
        )

    def _refused(self, exc: BaseException) -> DatabaseRefused | None:
        """A connection attempt the server refused on the login or the database name: a
        configuration error (runtime.errors.EX_CONFIG), not an outage to wait out."""
        reason = postgres_refusal(exc)
        if reason is None:
            return None
        return DatabaseRefused(
            "DATABASE_URL",
            f"postgres at {self._masked_url} refused the connection: {reason}"
            " (check DATABASE_URL, or POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB)",
        )

    def _pool_wait_s(self, started: float) -> float:
        """What is left of pool_timeout_s for the pool to open, after the login check."""
        return max(0.1, self.settings.pool_timeout_s - (time.monotonic() - started))

    def _not_open(self) -> DatabaseUnavailable:
        return DatabaseUnavailable("postgres: database is not open; call open() first")

    def _reconnect_failed(self, pool: Any) -> None:
        log.error("db_pool_reconnect_failed", pool=self.name, url=self._masked_url)

    def _log_opened(self) -> None:
        log.info("db_pool_opened", pool=self.name, url=self._masked_url)

    def _pool_options(self) -> dict[str, Any]:
        return {
            "min_size": self.settings.pool_min_size,
            "max_size": self.settings.pool_max_size,
            "timeout": self.settings.pool_timeout_s,
            "kwargs": connection_kwargs(self._conninfo),
            "name": self.name,
            "open": False,
        }

    def _lock_connect_options(self) -> dict[str, Any]:
        """A dedicated connection, outside the pool, for a singleton lock: the advisory lock
        belongs to the session, and a long-held lock must not take a pool slot."""
        return {
            "connect_timeout": max(1, int(self.settings.pool_timeout_s)),
            **connection_kwargs(self._conninfo),
        }

    def _retry_fresh(self, attempt: int, conn: psycopg.BaseConnection[Any]) -> bool:
        """After SET search_path failed: nothing of the caller's was sent yet, so a broken
        connection may be swapped for a fresh one, once."""
        if attempt == 1 and conn.broken:
            log.warning("db_connection_lost_before_use", pool=self.name)
            return True
        return False

    def pool_gauges(self) -> tuple[int, int, int]:
        if self._pool is None:
            return (0, 0, 0)
        stats = self._pool.get_stats()
        return (stats["pool_size"], stats["pool_available"], stats.get("requests_waiting", 0))

    def _stats(self) -> dict[str, Any]:
        if self._pool is None:
            return {"dialect": "postgres", "open": False}
        return {"dialect": "postgres", "open": True, **self._pool.get_stats()}

    @staticmethod
    def _claim_query(claim: Claim) -> tuple[str, list[Any]]:
        statement = claim_sql.postgres_claim_sql(
            claim.table, claim.where, claim.order_by, claim.limit
        )
        return statement, [*claim.params, claim.now, claim.owner, claim.expires_at]
