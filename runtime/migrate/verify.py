"""Verification: the same digest computed independently on each side.

SQLite side: read from the source snapshot, in rowid order, through the same value rules as the
copy (rejected rows are left out and counted). PostgreSQL side: read back from the target by SQL
(`COPY (SELECT ... ORDER BY key) TO STDOUT`, aggregates by SQL), never from the copy stream.

Digest per table: row count and a content hash. Tables the columnar hash takes (columnar.py)
hash each column apart, which says which column differs. Others hash the canonical rows in key
order, or a multiset hash (sum of row hashes) for tables not keyed by their integer rowid
(TablePlan.hashed_in_key_order), and add per column the
count of non-null values, min, max (text compared bytewise: COLLATE "C") and sum for numbers.
A bytea column has no min, max or sum: where such a table's content hash differs, each side is
read again for a checksum of its bytea columns (`differing_columns`), which names the ones that
differ - a cost only a table that failed pays.

Tables keyed by their rowid alias whose column types have a row text encoding (rowtext.py) are
hashed as md5 of that text per chunk: PostgreSQL computes it, with the aggregates, in one SQL
scan of the target, so the target side costs no Python per row. Other tables hash `repr` of the
canonical values on both sides.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import sys
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.errors import MigrationError
from runtime.migrate import columnar, rowtext
from runtime.migrate.chunk import source_select
from runtime.migrate.digest import (
    BYTEA_CHECKSUM_SQL,
    CHECKSUMMED_TYPES,
    MULTISET_MODULUS,
    ORDERED_TYPES,
    SUMMED_TYPES,
    TEXT_TYPES,
    ColumnAggregate,
    Digest,
    bytea_checksum,
    decimal_sum,
)
from runtime.migrate.plan import TablePlan, quote_ident
from runtime.migrate.row_rules import RowConverter, RowRejected
from runtime.migrate.sqlite_source import open_snapshot
from runtime.migrate.values import COPY_TYPES, NEEDS_CANONICAL, canonical, canonical_for, parse_json

if TYPE_CHECKING:
    import psycopg

    from runtime.migrate.arrow_digest import ColumnarDigest

#: Settings of the sessions reading the target. The digests run on a table just copied, before
#: ANALYZE: lacking statistics, the planner would sort a chunk its primary key already orders
#: (seen for the outer, open-ended ranges: a parallel scan, a sort and a merge), and JIT-compile
#: the aggregates. One plain ordered scan per digest: the other digests and the index builds
#: keep the cores busy. None of this changes a result.
TARGET_SESSION = (
    "-c TimeZone=UTC -c enable_sort=off -c jit=off -c max_parallel_workers_per_gather=0"
)
_ROW_TEXT = '"__domos_row_text"'


class _Hasher:
    def __init__(self, plan: TablePlan) -> None:
        self.ordered = plan.hashed_in_key_order
        self.row_text = rowtext.batch_formatter(plan) if rowtext.supports(plan) else None
        self.hash: Any = (
            hashlib.md5(usedforsecurity=False)
            if self.row_text is not None
            else hashlib.blake2b(digest_size=16)
        )
        self.multiset = 0
        self.canonical_columns = [
            (i, canonical_for(c.converter))
            for i, c in enumerate(plan.columns)
            if c.converter in NEEDS_CANONICAL
        ]
        self.types = [c.converter for c in plan.columns]

    def rows(self, rows: list[tuple[Any, ...]]) -> None:
        if self.row_text is not None:
            self.hash.update(self.row_text(rows).encode())
            return
        if self.canonical_columns:
            fixed = []
            for row in rows:
                values = list(row)
                for i, normal in self.canonical_columns:
                    values[i] = normal(values[i])
                fixed.append(tuple(values))
            rows = fixed
        if self.ordered:
            if rows:
                # Joined per batch, one newline per row: independent of batch boundaries.
                self.hash.update(("\n".join(map(repr, rows)) + "\n").encode())
        else:
            total = self.multiset
            for row in rows:
                digest = hashlib.blake2b(repr(row).encode(), digest_size=16).digest()
                total += int.from_bytes(digest, "big")
            self.multiset = total % MULTISET_MODULUS

    def aggregate(self, rows: list[tuple[Any, ...]], aggregates: list[ColumnAggregate]) -> None:
        for i, aggregate in enumerate(aggregates):
            values = [row[i] for row in rows if row[i] is not None]
            if not values:
                continue
            aggregate.non_null += len(values)
            kind = self.types[i]
            if kind in ORDERED_TYPES:
                low, high = min(values), max(values)
                aggregate.minimum = (
                    low if aggregate.minimum is None else min(aggregate.minimum, low)
                )
                aggregate.maximum = (
                    high if aggregate.maximum is None else max(aggregate.maximum, high)
                )
            if kind in SUMMED_TYPES:
                if kind == "double precision":
                    try:
                        part: Any = math.fsum(values)
                    except (OverflowError, ValueError):  # beyond float range, or inf + -inf
                        part = sum(values)
                else:
                    part = decimal_sum(values) if kind == "numeric" else sum(values)
                aggregate.total = part if aggregate.total is None else aggregate.total + part


def sqlite_digest(plan: TablePlan, chunk: tuple[int, int]) -> Digest:
    started = time.perf_counter()
    digest = _arrow_digest(plan, chunk) if columnar.digested_by_copy(plan) else None
    if digest is None:
        from runtime.migrate.arrow_digest import NulInText  # workers only (see _arrow_digest)

        try:
            digest = _sqlite_digest(plan, chunk, strict_utf8=True)
        except (sqlite3.OperationalError, NulInText) as exc:
            if isinstance(exc, sqlite3.OperationalError) and "decode" not in str(exc).lower():
                raise
            digest = _sqlite_digest(plan, chunk, strict_utf8=False)
    digest.seconds = time.perf_counter() - started
    return digest


def _arrow_digest(plan: TablePlan, chunk: tuple[int, int]) -> Digest | None:
    """The columnar digest of a chunk no rule applies to, read as Arrow batches (the fast copy's
    reader); None when the data needs the Python path after all (invalid UTF-8, a storage class
    the first rows did not announce). Runs in the workers: they alone load pyarrow."""
    from runtime.migrate import arrow_copy
    from runtime.migrate.arrow_digest import ColumnarDigest, NulInText

    hashed = ColumnarDigest(plan)
    try:
        with ExitStack() as stack:
            for batch in arrow_copy.read_batches(plan, chunk, stack):
                hashed.add(batch)
    except (arrow_copy.Unavailable, NulInText, *arrow_copy.ERRORS):
        return None
    return hashed.digest()


class RowDigest:
    """The source side of one chunk from its converted rows in key order, where the columnar
    hash does not apply (row texts, rowtext.py, or repr): fed batch by batch, by the Python
    copy from its own scan or by `_sqlite_digest`."""

    def __init__(self, plan: TablePlan) -> None:
        self.plan = plan
        self.hasher = _Hasher(plan)
        self.aggregates = [ColumnAggregate() for _ in plan.columns]
        self.result = Digest()

    def add_rows(self, rows: list[tuple[Any, ...]]) -> None:
        self.result.rows += len(rows)
        self.hasher.rows(rows)
        self.hasher.aggregate(rows, self.aggregates)

    def digest(self) -> Digest:
        _finish(self.result, self.hasher, self.plan, self.aggregates)
        return self.result


def chunk_digest(plan: TablePlan) -> ColumnarDigest | RowDigest:
    """What hashes a chunk's converted rows for this plan (the same on every source-side path)."""
    from runtime.migrate.arrow_digest import ColumnarDigest  # workers only (see _arrow_digest)

    return ColumnarDigest(plan) if columnar.supports(plan) else RowDigest(plan)


def _sqlite_digest(plan: TablePlan, chunk: tuple[int, int], *, strict_utf8: bool) -> Digest:
    converter = RowConverter(plan, strict_utf8=strict_utf8)
    hashed = chunk_digest(plan)
    skipped = 0
    source = open_snapshot(Path(plan.source_path), strict_utf8=strict_utf8)
    try:
        select, params = source_select(plan, chunk, ordered=True)
        reader = source.execute(select, params)
        while batch := reader.fetchmany(plan.batch_rows):
            if converter.trivial:
                converted = [row[1:] for row in batch]
            else:
                converted = []
                for row in batch:
                    try:
                        converted.append(converter.convert(row[0], row[1:]))
                    except RowRejected:
                        skipped += 1
            hashed.add_rows(converted)
    finally:
        source.close()
    result = hashed.digest()
    result.skipped_rows = skipped
    return result


def _finish(
    digest: Digest, hasher: _Hasher, plan: TablePlan, aggregates: list[ColumnAggregate]
) -> None:
    if hasher.ordered:
        digest.hash_parts.append(hasher.hash.hexdigest())
    else:
        digest.multiset = hasher.multiset
    digest.aggregates = {c.target: a for c, a in zip(plan.columns, aggregates, strict=True)}


def pg_ranges(plan: TablePlan) -> list[tuple[int | None, int | None]]:
    """PostgreSQL id ranges matching the SQLite chunks; the outer ones open-ended, so a row the
    target has beyond the source's ids is still counted."""
    if not plan.rowid_key or len(plan.chunks) <= 1:
        return [(None, None)]
    ranges: list[tuple[int | None, int | None]] = [(low, high) for low, high in plan.chunks]
    ranges[0] = (None, ranges[0][1])
    ranges[-1] = (ranges[-1][0], None)
    return ranges


def _pg_where(plan: TablePlan, bounds: tuple[int | None, int | None]) -> str:
    low, high = bounds
    column = quote_ident(plan.key[0]) if plan.key else ""
    conditions = []
    if low is not None:
        conditions.append(f"{column} >= {int(low)}")
    if high is not None:
        conditions.append(f"{column} <= {int(high)}")
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _pg_order(plan: TablePlan) -> str:
    return f" ORDER BY {quote_ident(plan.key[0])}" if plan.hashed_in_key_order else ""


def computed_by_server(plan: TablePlan) -> bool:
    """The target side is one SQL query (the caller only waits), no rows cross the wire."""
    return columnar.supports(plan) or rowtext.supports(plan)


def postgres_digest(
    plan: TablePlan, bounds: tuple[int | None, int | None], target_url: str
) -> Digest:
    if computed_by_server(plan):
        return _postgres_sql_digest(plan, bounds, target_url)
    started = time.perf_counter()
    digest = Digest()
    hasher = _Hasher(plan)
    columns = ", ".join(quote_ident(c.target) for c in plan.columns)
    where = _pg_where(plan, bounds)
    query = f"SELECT {columns} FROM {plan.qualified}{where}{_pg_order(plan)}"
    import psycopg  # the target side runs in the parent; the workers' fork server skips it

    with psycopg.connect(target_url, options=TARGET_SESSION) as conn:
        from psycopg.types.json import set_json_loads

        set_json_loads(parse_json, conn)  # numbers exact, as the source side parses them
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy,
        ):
            copy.set_types([COPY_TYPES[c.converter] for c in plan.columns])
            batch: list[tuple[Any, ...]] = []
            for row in copy.rows():
                batch.append(row)
                if len(batch) >= plan.batch_rows:
                    digest.rows += len(batch)
                    hasher.rows(batch)
                    batch = []
            digest.rows += len(batch)
            hasher.rows(batch)
        aggregates = _pg_aggregates(conn, plan, where)
    _finish(digest, hasher, plan, aggregates)
    digest.seconds = time.perf_counter() - started
    return digest


def _postgres_sql_digest(
    plan: TablePlan, bounds: tuple[int | None, int | None], target_url: str
) -> Digest:
    """Count, content hash and (but for the columnar hash) aggregates of one chunk: one ordered
    scan, all in SQL."""
    started = time.perf_counter()
    where = _pg_where(plan, bounds)
    order = _pg_order(plan)
    columnar_hash = columnar.supports(plan)
    if columnar_hash:
        hashes = columnar.postgres_hash_columns(plan)
        inner = ""
        aggregates = ""
    else:
        hashes = [f"md5(coalesce(string_agg({_ROW_TEXT}, ''), ''))"]
        inner = f"{rowtext.sql_row_text(plan)} || E'\\n' AS {_ROW_TEXT}, "
        aggregates = f", {_aggregate_columns(plan)}"
    import psycopg  # see postgres_digest

    with psycopg.connect(target_url, options=f"{TARGET_SESSION} -c work_mem=256MB") as conn:
        encoding = conn.execute("SHOW server_encoding").fetchone()
        if encoding is None or encoding[0] != "UTF8":
            raise MigrationError(f"target server_encoding is {encoding}, UTF8 expected")
        # What textsend() writes (columnar.py), whatever PGCLIENTENCODING says.
        conn.execute("SET client_encoding TO 'UTF8'")
        # string_agg(... ORDER BY key) sorts; an ordered subquery is read in key order from the
        # primary key instead (2.4x faster). Were the order ever lost, the hashes would differ:
        # a false alarm, never a false pass.
        columns = ", ".join(quote_ident(c.target) for c in plan.columns) or "NULL"
        query = (
            f"SELECT count(*), {', '.join(hashes)}{aggregates} "
            f"FROM (SELECT {inner}{columns} FROM {plan.qualified}{where}{order}) s"
        )
        try:
            row = conn.execute(query).fetchone()
        except psycopg.errors.ProgramLimitExceeded as exc:
            # Chunks are sized by the table's average row (sizing.py): a few rows far larger
            # than the others can still fill one beyond PostgreSQL's limit on one value.
            raise MigrationError(
                f"{plan.label}: verifying rows {bounds[0] or 'first'}..{bounds[1] or 'last'} "
                f"needs more than PostgreSQL's 1 GB on one value ({exc.diag.message_detail}); "
                "verify with smaller chunks: domos migrate verify --chunk-rows 100 (and the "
                "same --source/--target)"
            ) from exc
    assert row is not None
    rows = int(row[0])
    parts = [str(part) for part in row[1 : 1 + len(hashes)]]
    if columnar_hash:
        digest = columnar.chunk_digest(plan, rows, parts)
    else:
        digest = Digest(rows=rows, hash_parts=parts)
        values = _aggregates_from_row(plan, row[1 + len(hashes) :])
        digest.aggregates = {c.target: a for c, a in zip(plan.columns, values, strict=True)}
    digest.seconds = time.perf_counter() - started
    return digest


def _aggregate_columns(plan: TablePlan) -> str:
    parts = []
    for column in plan.columns:
        q = quote_ident(column.target)
        kind = column.converter
        ordered = f'{q} COLLATE "C"' if kind in TEXT_TYPES else q
        parts.append(f"count({q})")
        parts.append(f"min({ordered}), max({ordered})" if kind in ORDERED_TYPES else "NULL, NULL")
        parts.append(f"sum({q})" if kind in SUMMED_TYPES else "NULL")
    return ", ".join(parts) if parts else "NULL"


def _aggregates_from_row(plan: TablePlan, row: tuple[Any, ...]) -> list[ColumnAggregate]:
    result = []
    for i, column in enumerate(plan.columns):
        non_null, low, high, total = row[i * 4 : i * 4 + 4]
        if column.converter == "real":
            low = high = None  # float4 min/max come back widened; the hash covers them
        result.append(ColumnAggregate(int(non_null), low, high, total))
    return result


def _pg_aggregates(
    conn: psycopg.Connection[tuple[Any, ...]], plan: TablePlan, where: str
) -> list[ColumnAggregate]:
    if not plan.columns:
        return []
    query = f"SELECT {_aggregate_columns(plan)} FROM {plan.qualified}{where}"
    row = conn.execute(query).fetchone()
    assert row is not None
    return _aggregates_from_row(plan, row)


def compare(plan: TablePlan, source: Digest, target: Digest) -> list[str]:
    """Differences between the two digests, as readable sentences; empty when verified."""
    problems = []
    if source.rows != target.rows:
        problems.append(f"row count differs: sqlite {source.rows}, postgres {target.rows}")
    if source.content_hash != target.content_hash:
        problems.append("content hash differs")
        differing = [
            name
            for name, hashes in source.column_hashes.items()
            if target.column_hashes.get(name) != hashes
        ]
        if differing:
            problems.append("columns that differ: " + ", ".join(differing))
    types = {c.target: c.converter for c in plan.columns}
    for name, expected in source.aggregates.items():
        actual = target.aggregates.get(name, ColumnAggregate())
        if expected.non_null != actual.non_null:
            problems.append(f"{name}: non-null count {expected.non_null} vs {actual.non_null}")
        for label, left, right in (
            ("min", expected.minimum, actual.minimum),
            ("max", expected.maximum, actual.maximum),
        ):
            if types[name] == "real" or (left is None and right is None):
                continue
            if canonical(left) != canonical(right):
                problems.append(f"{name}: {label} {left!r} vs {right!r}")
        if not _sums_match(types[name], expected, actual):
            problems.append(f"{name}: sum {expected.total!r} vs {actual.total!r}")
    return problems


def differing_columns(plan: TablePlan, target_url: str) -> list[str]:
    """The columns of CHECKSUMMED_TYPES (bytea) whose values differ between the sides, for a
    table whose content hash differs: the aggregates say no more of them than their count.
    Each side computes the order-free checksum of each such column on its own (the source
    through the same rules and left-out rows as its digest, the target by SQL)."""
    columns = [c for c in plan.columns if c.converter in CHECKSUMMED_TYPES]
    if not columns:
        return []
    source = _sqlite_checksums(plan)
    target = _postgres_checksums(plan, target_url)
    return [c.target for c in columns if source[c.target] != target[c.target]]


def _sqlite_checksums(plan: TablePlan) -> dict[str, int]:
    positions = [i for i, c in enumerate(plan.columns) if c.converter in CHECKSUMMED_TYPES]
    totals = {plan.columns[i].target: 0 for i in positions}
    # Lenient reads: the text rules give valid text unchanged, as the strict reads would.
    converter = RowConverter(plan, strict_utf8=False)
    source = open_snapshot(Path(plan.source_path), strict_utf8=False)
    try:
        select, params = source_select(plan, (0, -1), ordered=False)
        reader = source.execute(select, params)
        while batch := reader.fetchmany(plan.batch_rows):
            rows = []
            for row in batch:
                try:
                    rows.append(converter.convert(row[0], row[1:]))
                except RowRejected:
                    continue
            for i in positions:
                values = [row[i] for row in rows if row[i] is not None]
                totals[plan.columns[i].target] += bytea_checksum(values)
    finally:
        source.close()
    return totals


def _postgres_checksums(plan: TablePlan, target_url: str) -> dict[str, int]:
    columns = [c for c in plan.columns if c.converter in CHECKSUMMED_TYPES]
    sums = ", ".join(BYTEA_CHECKSUM_SQL.format(c=quote_ident(c.target)) for c in columns)
    import psycopg  # see postgres_digest

    with psycopg.connect(target_url, options=TARGET_SESSION) as conn:
        row = conn.execute(f"SELECT {sums} FROM {plan.qualified}").fetchone()
    assert row is not None
    return {c.target: int(total or 0) for c, total in zip(columns, row, strict=True)}


def _sums_match(kind: str, expected: ColumnAggregate, actual: ColumnAggregate) -> bool:
    left, right = expected.total, actual.total
    if left is None or right is None:
        return (left is None or left == 0) and (right is None or right == 0)
    if kind == "double precision":
        return _float_sums_match(float(left), float(right), expected)
    return Decimal(left) == Decimal(right)


def _float_sums_match(left: float, right: float, aggregate: ColumnAggregate) -> bool:
    """Float sums depend on the order of additions (SQLite, Python's fsum and PostgreSQL all
    differ): equal within the rounding error n values of this magnitude can accumulate."""
    if math.isnan(left) or math.isnan(right):
        return math.isnan(left) and math.isnan(right)
    if math.isinf(left) or math.isinf(right):
        return left == right
    magnitude = max(abs(float(aggregate.minimum or 0)), abs(float(aggregate.maximum or 0)))
    tolerance = 2 * aggregate.non_null * sys.float_info.epsilon * magnitude
    return math.isclose(left, right, rel_tol=1e-9, abs_tol=max(1e-9, tolerance))
