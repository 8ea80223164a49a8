"""Source-side aggregates: numeric sums are exact, as PostgreSQL's sum(numeric) is."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runtime.migrate.digest import bytea_checksum
from runtime.migrate.plan import ColumnPlan, TablePlan
from runtime.migrate.verify import RowDigest
from tests.fixtures.migrate_plans import id_keyed_plan, key_column

#: 31 digits before the point and 6 after: the default Decimal context keeps 28 in all.
VALUES = [Decimal("1234567890123456789012345678901.000001"), Decimal("0.000002"), Decimal(7)]
EXACT = Decimal("1234567890123456789012345678908.000003")


def _plan(other: str) -> TablePlan:
    return id_keyed_plan(
        [
            key_column(passthrough=False),
            ColumnPlan("n", "n", "numeric", False, False, "test"),
            ColumnPlan("o", "o", other, False, False, "test"),
        ],
        rows=len(VALUES),
    )


@pytest.mark.parametrize("other", ["uuid", "interval"])  # row texts, and repr of rows
def test_a_numeric_sum_of_the_row_digest_is_exact(other: str) -> None:
    digest = RowDigest(_plan(other))
    digest.add_rows([(i + 1, value, None) for i, value in enumerate(VALUES)])
    assert digest.digest().aggregates["n"].total == EXACT


def test_the_bytea_checksum_is_the_one_postgresql_computes() -> None:
    """BYTEA_CHECKSUM_SQL over these two values gave 79156552807400467 in PostgreSQL 15."""
    assert bytea_checksum([b"\x01\x00\xff", b""]) == 79156552807400467
    assert bytea_checksum([]) == 0
    assert bytea_checksum([b"\x01\x00\xfe", b""]) != 79156552807400467
