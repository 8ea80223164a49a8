"""The one place where driver errors become domos errors.

sqlite3, psycopg and psycopg_pool exceptions are mapped onto the `runtime.errors.DatabaseError`
branch; the driver exception stays attached as `__cause__`. Messages are built from the error
class, SQLSTATE / SQLite error name and the server's primary message, never from DETAIL (which
quotes row values) nor from parameters, so secrets do not leak into logs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from runtime.db.metrics import count_query_error
from runtime.errors import (
    CheckViolation,
    DatabaseError,
    DatabaseUnavailable,
    ForeignKeyViolation,
    NotNullViolation,
    QueryError,
    TransientError,
    UniqueViolation,
)

_SQLITE_CONSTRAINTS: dict[str, type[DatabaseError]] = {
    "SQLITE_CONSTRAINT_UNIQUE": UniqueViolation,
    "SQLITE_CONSTRAINT_PRIMARYKEY": UniqueViolation,
    "SQLITE_CONSTRAINT_ROWID": UniqueViolation,
    "SQLITE_CONSTRAINT_FOREIGNKEY": ForeignKeyViolation,
    "SQLITE_CONSTRAINT_NOTNULL": NotNullViolation,
    "SQLITE_CONSTRAINT_CHECK": CheckViolation,
}
_SQLITE_TRANSIENT_PREFIXES = ("SQLITE_BUSY", "SQLITE_LOCKED")
_SQLITE_UNAVAILABLE_PREFIXES = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_READONLY")

_PG_BY_SQLSTATE: dict[str, type[DatabaseError]] = {
    "23505": UniqueViolation,
    "23503": ForeignKeyViolation,
    "23502": NotNullViolation,
    "23514": CheckViolation,
    "40001": TransientError,  # serialization_failure
    "40P01": TransientError,  # deadlock_detected
    "55P03": TransientError,  # lock_not_available
    "57014": TransientError,  # query_canceled (statement_timeout)
    "57P01": DatabaseUnavailable,  # admin_shutdown, also pg_terminate_backend
    "57P02": DatabaseUnavailable,  # crash_shutdown
    "57P03": DatabaseUnavailable,  # cannot_connect_now
}
#: SQLSTATE classes: connection exception, syntax/access rule, data exception, undefined things.
_PG_BY_CLASS: dict[str, type[DatabaseError]] = {
    "08": DatabaseUnavailable,
    "42": QueryError,
    "22": QueryError,
    "0A": QueryError,
    "3F": QueryError,  # invalid_schema_name
    "53": TransientError,  # insufficient resources (too many connections, out of memory)
}


def _kind(error_class: type[DatabaseError]) -> str:
    return error_class.__name__


def _build(error_class: type[DatabaseError], message: str) -> DatabaseError:
    count_query_error(_kind(error_class))
    return error_class(message)


def translate_sqlite(exc: sqlite3.Error) -> DatabaseError:
    name = getattr(exc, "sqlite_errorname", None) or ""
    error_class: type[DatabaseError]
    if name in _SQLITE_CONSTRAINTS:
        error_class = _SQLITE_CONSTRAINTS[name]
    elif name.startswith(_SQLITE_TRANSIENT_PREFIXES):
        error_class = TransientError
    elif name.startswith(_SQLITE_UNAVAILABLE_PREFIXES):
        error_class = DatabaseUnavailable
    elif isinstance(exc, sqlite3.IntegrityError):
        error_class = DatabaseError
    elif isinstance(exc, sqlite3.OperationalError | sqlite3.ProgrammingError):
        # "no such table", syntax errors, wrong number of bindings, closed cursor.
        error_class = QueryError
    elif isinstance(exc, sqlite3.InterfaceError):  # unsupported parameter type
        error_class = QueryError
    else:
        error_class = DatabaseError
    label = f"{name}: " if name else ""
    # sqlite3 messages name tables and columns, never bound values.
    return _build(error_class, f"sqlite: {label}{exc}")


def translate_postgres(exc: Exception) -> DatabaseError:
    """psycopg / psycopg_pool exception -> domos error."""
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return _build(DatabaseUnavailable, f"postgres: no connection from the pool in time: {exc}")
    if isinstance(exc, psycopg_pool.PoolClosed):
        return _build(DatabaseUnavailable, "postgres: the connection pool is closed")
    if isinstance(exc, psycopg_pool.TooManyRequests):
        return _build(DatabaseUnavailable, "postgres: too many requests waiting for the pool")
    sqlstate = getattr(exc, "sqlstate", None)
    error_class: type[DatabaseError] | None = None
    if sqlstate:
        error_class = _PG_BY_SQLSTATE.get(sqlstate) or _PG_BY_CLASS.get(sqlstate[:2])
    if error_class is None:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            # No SQLSTATE: the connection broke or could not be made.
            error_class = DatabaseUnavailable
        elif isinstance(exc, psycopg.ProgrammingError | psycopg.DataError):
            error_class = QueryError  # e.g. placeholder/parameter count mismatch
        elif isinstance(exc, pg_errors.IntegrityError):
            error_class = DatabaseError
        else:
            error_class = DatabaseError
    return _build(error_class, f"postgres: {_pg_message(exc, sqlstate)}")


#: What libpq reports when the server refuses the login or the database itself (SQLSTATE classes
#: 28 and 3D, which psycopg cannot give for a connection that never opened, so the server's
#: English message is matched). Restarting does not fix these: they are configuration errors.
#: "Connection refused", timeouts, "the database system is starting up" and "too many clients"
#: are outages and stay DatabaseUnavailable.
_PG_REFUSAL = re.compile(
    r"(?:FATAL:\s+)?(?P<reason>"
    r"\w+ authentication failed for user \"[^\"\n]*\""  # password, scram, md5, ident, peer
    r"|role \"[^\"\n]*\" does not exist"
    r"|database \"[^\"\n]*\" does not exist"
    r"|no pg_hba\.conf entry for [^\n]*"
    r"|pg_hba\.conf rejects connection for [^\n]*"
    r"|permission denied for database [^\n]*"
    r"|fe_sendauth: no password supplied"
    r")"
)


def postgres_refusal(exc: BaseException) -> str | None:
    """The server's reason when a connection attempt failed on the login or the database name
    (a configuration error), else None (unreachable, starting, overloaded: worth waiting for).

    The reason names the user or database, never the password."""
    if not isinstance(exc, psycopg.OperationalError) or isinstance(exc, psycopg_pool.PoolTimeout):
        return None
    match = _PG_REFUSAL.search(str(exc))
    return match.group("reason").strip() if match else None


def _pg_message(exc: Exception, sqlstate: str | None) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary is None:
        # Client-side errors (connection failures, parameter counts) carry no DETAIL; the first
        # line is enough and stays free of values.
        primary = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    parts = [f"[{sqlstate}]" if sqlstate else f"[{type(exc).__name__}]", primary]
    if constraint:
        parts.append(f"(constraint {constraint})")
    return " ".join(parts)


class Translating:
    """`with POSTGRES_ERRORS:` re-raises a driver error of the block as its domos error.

    A class rather than `contextlib.contextmanager`: it sits on every query, and a stateless
    instance costs two plain method calls instead of a generator per use.
    """

    __slots__ = ("_driver_errors", "_translate")

    def __init__(
        self,
        driver_errors: type[Exception] | tuple[type[Exception], ...],
        translate: Callable[[Any], DatabaseError],
    ) -> None:
        self._driver_errors = driver_errors
        self._translate = translate

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and isinstance(exc, self._driver_errors):
            raise self._translate(exc) from exc


#: What psycopg and psycopg_pool raise (pool errors subclass psycopg.OperationalError).
POSTGRES_DRIVER_ERRORS = (psycopg.Error,)
POSTGRES_ERRORS = Translating(POSTGRES_DRIVER_ERRORS, translate_postgres)
SQLITE_ERRORS = Translating(sqlite3.Error, translate_sqlite)
