"""A chunk's census of storage classes decides what the fast copy reads of each column."""

from __future__ import annotations

import pytest

from runtime.migrate import arrow_copy
from runtime.migrate.plan import ColumnPlan, TablePlan
from tests.fixtures.migrate_plans import id_keyed_plan, key_column


def _plan(basis: str, amount_classes: dict[str, int] | None = None) -> TablePlan:
    return id_keyed_plan(
        [
            key_column(),
            ColumnPlan("status", "status", "text", True, False, "declared", passthrough=True),
            ColumnPlan("note", "note", "text", False, False, "declared", passthrough=True),
            ColumnPlan(
                "amount", "amount", "numeric(10,2)", False, False, "d", classes=amount_classes
            ),
        ],
        chunks=[(1, 10)],
        basis=basis,
    )


def _expressions(plan: TablePlan, census: dict[str, frozenset[str]]) -> list[str]:
    return [
        expression for expression, _ in arrow_copy._read(plan, arrow_copy._layout(plan, census))
    ]


def test_a_column_of_one_class_is_read_as_stored_and_of_several_once_per_class() -> None:
    plan = _plan("declared")
    held = {"status": frozenset({"text"}), "note": frozenset({"text", "null"})}
    assert _expressions(plan, {**held, "amount": frozenset({"text", "null"})}) == [
        '"id"',
        '"status"',
        '"note"',
        '"amount"',
    ]
    assert _expressions(plan, {**held, "amount": frozenset({"real", "text"})})[3:] == [
        """CASE WHEN typeof("amount") = 'real' THEN "amount" END""",
        """CASE WHEN typeof("amount") = 'text' THEN "amount" END""",
    ]
    # NULLs alone: one column of nulls, typed as the first class the rule takes
    layout = arrow_copy._layout(plan, {**held, "amount": frozenset({"null"})})
    assert layout[3] == ("integer",)


@pytest.mark.parametrize(
    "census",
    [
        {"status": frozenset({"text", "blob"}), "note": frozenset(), "amount": frozenset()},
        {"status": frozenset({"text", "null"}), "note": frozenset(), "amount": frozenset()},
        {"status": frozenset({"integer"}), "note": frozenset(), "amount": frozenset()},
        {"status": frozenset(), "note": frozenset({"real"}), "amount": frozenset()},
        {"status": frozenset(), "note": frozenset(), "amount": frozenset({"blob"})},
    ],
    ids=["blob-in-text", "null-in-not-null-text", "integer-in-text", "real-in-text", "blob-amount"],
)
def test_a_class_a_declared_type_excludes_replans_before_anything_is_read(
    census: dict[str, frozenset[str]],
) -> None:
    with pytest.raises(arrow_copy.DeclaredTypeBroken):
        arrow_copy._layout(_plan("declared"), census)


def test_a_class_the_profile_did_not_count_takes_the_python_path() -> None:
    plan = _plan("profile", {"text": 10})
    assert arrow_copy._layout(plan, {"amount": frozenset({"text"})})[3] == ("text",)
    with pytest.raises(arrow_copy.Unavailable) as raised:
        arrow_copy._layout(plan, {"amount": frozenset({"text", "real"})})
    assert not isinstance(raised.value, arrow_copy.DeclaredTypeBroken)
    # a profiled plan's text columns are not censused: the profile counted their classes
    assert [c.source for c in arrow_copy._censused(plan)] == ["amount"]
