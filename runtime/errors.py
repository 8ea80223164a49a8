"""The one exception tree of domos.

Every error the project raises on purpose derives from `DomosError`, so callers can catch the
project's failures without catching programming errors. Driver errors (sqlite3, psycopg) are
translated into the `DatabaseError` branch in one place, `runtime.db.errors`.
"""

from __future__ import annotations


class DomosError(Exception):
    """Root of every error domos raises on purpose."""


class ConfigError(DomosError):
    """A setting is missing or invalid. The message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class DatabaseError(DomosError):
    """Any failure reported by the database layer."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached, the pool timed out, or the connection broke mid-query."""


class IntegrityError(DatabaseError):
    """A constraint rejected the write."""


class UniqueViolation(IntegrityError):
    """A unique or primary-key constraint rejected the write."""


class ForeignKeyViolation(IntegrityError):
    """A foreign key points at a missing row."""


class NotNullViolation(IntegrityError):
    """A NOT NULL column got NULL."""


class CheckViolation(IntegrityError):
    """A CHECK constraint rejected the value."""


class TransientError(DatabaseError):
    """Retrying the whole transaction may succeed: deadlock, serialization failure, SQLite busy."""


class QueryError(DatabaseError):
    """The statement itself is wrong: syntax, unknown table or column, bad parameter count."""


class LockNotAcquired(DomosError):
    """Another process holds the singleton lock."""


class MigrationError(DomosError):
    """A schema migration could not be applied, or an applied one was changed afterwards."""


class MonitorError(DomosError):
    """A monitor cannot be found or loaded, or broke the Monitor contract."""


class DemoFailed(DomosError):
    """A step of the `domos demo` scenario did not happen in time."""


#: sysexits.h EX_CONFIG: the exit status of a program stopped by a `ConfigError`. Restarting it
#: cannot help, so supervisord does not (`exitcodes` in runtime/supervision/programs.py) and the
#: event listener shuts the role down as for a FATAL program.
EX_CONFIG = 78


class DatabaseRefused(ConfigError, DatabaseError):
    """The PostgreSQL server refused the configured login or database (wrong password, unknown
    role or database): a configuration error, unlike a server that cannot be reached."""
