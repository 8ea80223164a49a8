"""Verification digests and the source side computed by SQLite itself.

A `Digest` is what each side of verification computes per chunk: row count, content hash (md5 of
the canonical row texts in key order, or a multiset hash), and per-column aggregates.

When a table needs no value rule (rowtext.sqlite_supports), SQLite builds the row texts and the
aggregates in SQL, in C: `sqlite_sql_digest` reads a chunk on its own (`domos migrate verify`,
resumed tables), and `SourceRowTexts` lets the copier hash them from the same scan that feeds
COPY, as an extra column of its SELECT. Either way the text comes from the stored source values,
never from what is sent to PostgreSQL, and the target side is computed by PostgreSQL alone.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.migrate import rowtext
from runtime.migrate.plan import TablePlan
from runtime.migrate.sqlite_source import open_snapshot, quote_sqlite

#: Rows per SQL block of `sqlite_sql_digest` (one group_concat blob each).
SQL_BLOCK_ROWS = 5000

MULTISET_MODULUS = 2**128

ORDERED_TYPES = frozenset(
    {
        "bigint",
        "integer",
        "smallint",
        "double precision",
        "real",
        "numeric",
        "text",
        "character varying",
        "character",
        "timestamp with time zone",
        "timestamp without time zone",
        "date",
    }
)
SUMMED_TYPES = frozenset({"bigint", "integer", "smallint", "double precision", "numeric"})
TEXT_TYPES = frozenset({"text", "character varying", "character"})


@dataclass
class ColumnAggregate:
    non_null: int = 0
    minimum: Any = None
    maximum: Any = None
    total: Any = None

    def merge(self, other: ColumnAggregate) -> None:
        self.non_null += other.non_null
        if other.minimum is not None:
            self.minimum = (
                other.minimum if self.minimum is None else min(self.minimum, other.minimum)
            )
        if other.maximum is not None:
            self.maximum = (
                other.maximum if self.maximum is None else max(self.maximum, other.maximum)
            )
        if other.total is not None:
            self.total = other.total if self.total is None else self.total + other.total


@dataclass
class Digest:
    rows: int = 0
    hash_parts: list[str] = field(default_factory=list)  # one per chunk, in key order
    multiset: int = 0
    aggregates: dict[str, ColumnAggregate] = field(default_factory=dict)
    skipped_rows: int = 0  # SQLite side: rows the rules reject (they are in the reject file)
    seconds: float = 0.0

    def merge(self, other: Digest) -> None:
        self.rows += other.rows
        self.hash_parts.extend(other.hash_parts)
        self.multiset = (self.multiset + other.multiset) % MULTISET_MODULUS
        self.skipped_rows += other.skipped_rows
        self.seconds += other.seconds
        for name, aggregate in other.aggregates.items():
            self.aggregates.setdefault(name, ColumnAggregate()).merge(aggregate)

    @property
    def content_hash(self) -> str:
        if self.hash_parts and len(self.hash_parts) > 1:
            return hashlib.blake2b("".join(self.hash_parts).encode(), digest_size=16).hexdigest()
        if self.hash_parts:
            return self.hash_parts[0]
        return f"multiset:{self.multiset:032x}"


class SourceRowTexts:
    """md5 of the SQLite-built row texts of one chunk, fed batch by batch in rowid order."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.rows = 0

    @staticmethod
    def column(plan: TablePlan) -> str:
        """The extra SELECT column: the row text and its newline, as a blob (no decoding)."""
        return f"CAST({rowtext.sqlite_row_text(plan)} || char(10) AS BLOB)"

    def add(self, blobs: list[bytes]) -> None:
        self.md5.update(b"".join(blobs))
        self.rows += len(blobs)

    def digest(
        self, conn: sqlite3.Connection, plan: TablePlan, chunk: tuple[int, int]
    ) -> Digest | None:
        """The chunk's digest, aggregates included; None if an integer sum overflows."""
        try:
            aggregates = sqlite_aggregates(conn, plan, chunk)
        except sqlite3.OperationalError as exc:
            if not falls_back(exc):
                raise
            return None
        return _digest(plan, self.rows, self.md5.hexdigest(), aggregates)


def _digest(
    plan: TablePlan, rows: int, content_hash: str, aggregates: list[ColumnAggregate]
) -> Digest:
    digest = Digest(rows=rows, hash_parts=[content_hash])
    digest.aggregates = {c.target: a for c, a in zip(plan.columns, aggregates, strict=True)}
    return digest


def sqlite_sql_digest(plan: TablePlan, chunk: tuple[int, int]) -> Digest | None:
    """The digest of one chunk computed by SQLite: row texts per block of rows in rowid order
    (Python only feeds md5), then the aggregates in one scan. None when the data needs the
    Python path after all: invalid UTF-8 (the copy applied its rule) or an integer sum beyond
    64 bits."""
    md5 = hashlib.md5(usedforsecurity=False)
    rows = 0
    source = open_snapshot(Path(plan.source_path), strict_utf8=True)
    rowtext.register_sqlite_functions(source)
    query = _block_query(plan)
    low, high = chunk if chunk != (0, -1) else (-(2**63), 2**63 - 1)
    try:
        while low <= high:
            count, last, block = source.execute(query, (low, high)).fetchone()
            if not count:
                break
            block.decode("utf-8")  # raises on invalid UTF-8: the rules decide those texts
            md5.update(block)
            rows += count
            if last >= high:
                break
            low = last + 1
        aggregates = sqlite_aggregates(source, plan, chunk)
    except (sqlite3.OperationalError, UnicodeDecodeError) as exc:
        if isinstance(exc, sqlite3.OperationalError) and not falls_back(exc):
            raise
        return None
    finally:
        source.close()
    return _digest(plan, rows, md5.hexdigest(), aggregates)


def falls_back(exc: sqlite3.OperationalError) -> bool:
    """Errors after which the Python path computes the digest instead."""
    message = str(exc).lower()
    return "decode" in message or "integer overflow" in message


def _block_query(plan: TablePlan) -> str:
    # Keyset blocks: the subquery's ORDER BY keeps group_concat in rowid order (SQLite does not
    # flatten an ordered subquery into an aggregate); a reordering could only fail verification.
    return (
        "SELECT count(*), max(r), CAST(group_concat(t, '') AS BLOB)"
        f" FROM (SELECT rowid AS r, {rowtext.sqlite_row_text(plan)} || char(10) AS t"
        f" FROM {quote_sqlite(plan.table)} WHERE rowid >= ? AND rowid <= ?"
        f" ORDER BY rowid LIMIT {SQL_BLOCK_ROWS})"
    )


def sqlite_aggregates(
    conn: sqlite3.Connection, plan: TablePlan, chunk: tuple[int, int]
) -> list[ColumnAggregate]:
    """Per-column count, min, max (bytewise for texts: BINARY, like COLLATE "C") and sum of one
    chunk, in one scan by SQLite. Raises sqlite3.OperationalError when an integer sum
    overflows."""
    parts = []
    for column in plan.columns:
        c = quote_sqlite(column.source)
        parts.append(f"count({c})")
        ordered = column.converter in ORDERED_TYPES
        parts.append(
            f"min({c} COLLATE BINARY), max({c} COLLATE BINARY)" if ordered else "NULL, NULL"
        )
        parts.append(f"sum({c})" if column.converter in SUMMED_TYPES else "NULL")
    if not parts:
        return []
    sql = f"SELECT {', '.join(parts)} FROM {quote_sqlite(plan.table)}"
    params: tuple[int, ...] = ()
    if chunk != (0, -1):
        sql += " WHERE rowid BETWEEN ? AND ?"
        params = chunk
    row = conn.execute(sql, params).fetchone()
    return [
        ColumnAggregate(int(row[i * 4]), row[i * 4 + 1], row[i * 4 + 2], row[i * 4 + 3])
        for i in range(len(plan.columns))
    ]
