"""The synchronous sqlite3 operations both SQLite facades run on one connection.

The sync facade calls them on the caller's thread, the async one on the connection's worker
thread, so each operation (and each fix to one) exists once. They raise sqlite3 errors; the
facades translate them.

Connections run in WAL with `busy_timeout` from settings, `foreign_keys=ON`,
`synchronous=NORMAL`, in autocommit (sqlite3 `isolation_level=None`): a plain call commits by
itself, and a transaction starts with `BEGIN IMMEDIATE`, which takes the write lock up front so a
writer waits for `busy_timeout` instead of failing with SQLITE_BUSY when its read snapshot would
have to be upgraded.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import runtime.db.claim as claim_sql
from runtime.db.base import Claim, Params, Row
from runtime.db.types import adapt_sqlite_params
from runtime.errors import QueryError


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_s,
        isolation_level=None,
        detect_types=sqlite3.PARSE_DECLTYPES,
        check_same_thread=False,  # used by one caller at a time, from pool threads
        cached_statements=256,
    )
    try:
        _enter_wal(conn, busy_timeout_s)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _enter_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch the file to WAL (a persistent setting), waiting out other connections doing so.

    Changing the journal mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
    rather than calling the busy handler, so connections opening a new file together would fail.
    """
    deadline = time.monotonic() + busy_timeout_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _rows(cursor: sqlite3.Cursor, rows: list[Any]) -> list[Row]:
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in rows]


def op_execute(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    return conn.execute(sql, adapt_sqlite_params(params)).rowcount


def op_executemany(conn: sqlite3.Connection, sql: str, seq_of_params: Sequence[Params]) -> int:
    return conn.executemany(sql, (adapt_sqlite_params(p) for p in seq_of_params)).rowcount


def op_fetchall(conn: sqlite3.Connection, sql: str, params: Params) -> list[Row]:
    cursor = conn.execute(sql, adapt_sqlite_params(params))
    return _rows(cursor, cursor.fetchall())


def op_fetchone(conn: sqlite3.Connection, sql: str, params: Params) -> Row | None:
    cursor = conn.execute(sql, adapt_sqlite_params(params))
    row = cursor.fetchone()
    if row is None or cursor.description is None:
        return None
    # Finish the statement so it holds no read snapshot while the connection sits idle.
    cursor.close()
    return dict(zip([column[0] for column in cursor.description], row, strict=True))


def op_open_cursor(conn: sqlite3.Connection, sql: str, params: Params) -> sqlite3.Cursor:
    return conn.execute(sql, adapt_sqlite_params(params))


def op_fetchmany(cursor: sqlite3.Cursor, size: int) -> list[Row]:
    return _rows(cursor, cursor.fetchmany(size))


def op_executescript(conn: sqlite3.Connection, script: str) -> None:
    conn.executescript(script)


def split_statements(script: str) -> list[str]:
    """Split a script at the `;` that end complete statements (triggers' inner `;` kept)."""
    statements = []
    start = 0
    for match in re.finditer(";", script):
        candidate = script[start : match.end()]
        if sqlite3.complete_statement(candidate):
            if candidate.strip(" \t\r\n;"):
                statements.append(candidate)
            start = match.end()
    rest = script[start:]
    if rest.strip():
        if not sqlite3.complete_statement(rest + ";"):
            raise QueryError("script ends with an incomplete statement")
        statements.append(rest)
    return statements


def op_script_in_transaction(conn: sqlite3.Connection, script: str) -> None:
    # sqlite3's executescript would COMMIT the open transaction first; run statement by statement.
    for statement in split_statements(script):
        conn.execute(statement)


def op_begin(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")


def op_finish(conn: sqlite3.Connection, commit: bool) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT" if commit else "ROLLBACK")


def op_claim(conn: sqlite3.Connection, claim: Claim) -> list[Row]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        picked = conn.execute(
            claim_sql.sqlite_pick_sql(claim.table, claim.where, claim.order_by, claim.limit),
            adapt_sqlite_params([*claim.params, claim.now]),
        ).fetchall()
        ids = [row[0] for row in picked]
        rows: list[Row] = []
        if ids:
            lease = claim_sql.sqlite_lease_sql(claim.table, len(ids))
            rows = op_fetchall(conn, lease, [claim.owner, claim.expires_at, *ids])
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    position = {row_id: index for index, row_id in enumerate(ids)}
    rows.sort(key=lambda row: position[row["id"]])
    return rows
