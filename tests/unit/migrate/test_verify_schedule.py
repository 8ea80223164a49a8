"""Which tables get the source side of verification from the copy's own scan."""

from __future__ import annotations

from dataclasses import replace

from runtime.migrate.plan import ColumnPlan, TablePlan
from runtime.migrate.verify_schedule import digested_by_copy
from tests.fixtures.migrate_plans import id_keyed_plan, key_column


def _plan(value_type: str, *, passthrough: bool, rowid_key: bool = True) -> TablePlan:
    return id_keyed_plan(
        [
            key_column(),
            ColumnPlan("v", "v", value_type, False, False, "test", passthrough=passthrough),
        ],
        rowid_key=rowid_key,
        chunks=[(1, 5), (6, 10)],
    )


def test_the_fast_path_digests_what_the_columnar_hash_covers() -> None:
    assert digested_by_copy(_plan("text", passthrough=True))


def test_the_python_path_digests_the_rows_it_converts() -> None:
    assert digested_by_copy(_plan("jsonb", passthrough=False))
    assert digested_by_copy(replace(_plan("text", passthrough=True), excluded_rowids={3: "fk"}))


def test_chunks_verification_does_not_share_are_read_again() -> None:
    # Not keyed by the rowid: verification reads the table as one range, the copy in two.
    assert not digested_by_copy(_plan("jsonb", passthrough=False, rowid_key=False))
    single = replace(_plan("text", passthrough=True, rowid_key=False), chunks=[(1, 10)])
    # The fast path of a table the columnar hash does not cover leaves it to verification.
    assert not digested_by_copy(single)
    assert digested_by_copy(
        replace(_plan("jsonb", passthrough=False, rowid_key=False), chunks=[(1, 10)])
    )
