"""Verification digests: what each side of verification computes per chunk.

A `Digest` holds the row count and the content hash: columnar.py's, with a hash per column, or
md5 of canonical row texts in key order, or a multiset hash for tables not keyed by their integer
rowid, both with per-column aggregates (count, min, max, sum) that say which column differs. The
digests of a table's chunks merge into one per side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, localcontext
from functools import partial
from operator import itemgetter, methodcaller
from typing import Any

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
#: Types no aggregate tells apart beyond their count (PostgreSQL has no min, max or sum of
#: bytea): where a table's content hash differs, a checksum of each such column's values, read
#: again on each side, says whether it differs (verify.differing_columns).
CHECKSUMMED_TYPES = frozenset({"bytea"})
#: The checksum of a bytea column on the target: per value, the first 56 bits of its md5 as an
#: integer (never negative), summed exactly (numeric): order-free, as `bytea_checksum`.
BYTEA_CHECKSUM_SQL = "sum(('x' || left(md5({c}), 14))::bit(56)::bigint)"
_MD5 = partial(hashlib.md5, usedforsecurity=False)
_DIGEST = methodcaller("digest")
_FIRST_56_BITS = itemgetter(slice(0, 7))


def bytea_checksum(values: Iterable[bytes]) -> int:
    """BYTEA_CHECKSUM_SQL of the non-null values of a bytea column, computed in C (maps of
    builtins, no Python per value): a value that differs changes it, wherever it is."""
    return sum(map(int.from_bytes, map(_FIRST_56_BITS, map(_DIGEST, map(_MD5, values)))))


_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def decimal_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum of Decimals, as PostgreSQL's sum(numeric) is (the default context would
    round it to 28 digits)."""
    with localcontext(_EXACT):
        return sum(values, Decimal(0))


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
    #: The columnar hash's per column (columnar.py), one per chunk in key order.
    column_hashes: dict[str, list[str]] = field(default_factory=dict)
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
        for name, hashes in other.column_hashes.items():
            self.column_hashes.setdefault(name, []).extend(hashes)

    @property
    def content_hash(self) -> str:
        if self.hash_parts and len(self.hash_parts) > 1:
            return hashlib.blake2b("".join(self.hash_parts).encode(), digest_size=16).hexdigest()
        if self.hash_parts:
            return self.hash_parts[0]
        return f"multiset:{self.multiset:032x}"
