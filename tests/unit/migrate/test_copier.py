"""The copier's choice of path for a plan from declared types."""

from __future__ import annotations

from runtime.migrate.copier import copy_chunk
from runtime.migrate.plan import ColumnPlan, TablePlan
from tests.fixtures.migrate_plans import id_keyed_plan, key_column


def _declared_plan(*, text_passthrough: bool) -> TablePlan:
    return id_keyed_plan(
        [
            key_column(),
            ColumnPlan("v", "v", "text", False, False, "test", passthrough=text_passthrough),
        ],
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
