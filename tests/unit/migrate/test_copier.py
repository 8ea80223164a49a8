"""The copier's choice of path for a plan from declared types."""

from __future__ import annotations

from pathlib import Path

from runtime.migrate.copier import copy_chunk
from runtime.migrate.plan import ColumnPlan, TablePlan


def _declared_plan(*, text_passthrough: bool) -> TablePlan:
    return TablePlan(
        source_name="s",
        source_path=str(Path("/nonexistent/s.sqlite")),
        table="t",
        schema="public",
        target="t",
        columns=[
            ColumnPlan("id", "id", "bigint", True, True, "key", passthrough=True),
            ColumnPlan("v", "v", "text", False, False, "test", passthrough=text_passthrough),
        ],
        key=("id",),
        rowid_key=True,
        without_rowid=False,
        source_key=("id",),
        rows=10,
        chunks=[(0, -1)],
        create_sql=None,
        basis="declared",
    )


def test_a_declared_plan_the_fast_copy_cannot_take_is_replanned_not_trusted() -> None:
    """Only the fast copy checks a declared plan's storage classes: the Python path would take
    them on trust, so such a chunk is planned from its profile instead (nothing is read or
    written: neither the snapshot nor the target exists)."""
    result = copy_chunk(
        _declared_plan(text_passthrough=False),
        (0, -1),
        "postgresql://nobody@127.0.0.1:1/none",
        "/nonexistent/rejects.jsonl",
    )
    assert result.replan == "the fast copy does not apply"
    assert result.rows_written == 0
