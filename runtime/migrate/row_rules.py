"""A plan's value rules applied to one source row: the row to send, or why it is rejected.

Used by the Python copy path (python_copy.py) and by the source side of verification (verify.py),
so both keep out exactly the same rows.
"""

from __future__ import annotations

from typing import Any

from runtime.migrate.plan import TablePlan
from runtime.migrate.values import CONVERTERS, Converter, Reject


class RowConverter:
    """Applies the column converters of a plan; raises RowRejected naming the failing column.

    Columns the profile proved clean are passed through untouched; with strict_utf8 off (after
    invalid UTF-8 was met) every text column goes through its rule again.
    """

    def __init__(self, plan: TablePlan, *, strict_utf8: bool = True) -> None:
        self.converters: list[Converter] = [CONVERTERS[c.converter] for c in plan.columns]
        self.names = [c.source for c in plan.columns]
        self.active = [
            (i, self.converters[i])
            for i, c in enumerate(plan.columns)
            if not (c.passthrough and (strict_utf8 or c.converter != "text"))
        ]
        self.required = [i for i, c in enumerate(plan.columns) if c.not_null and not c.passthrough]
        self.key_columns = set(plan.key)
        self.required_problem = {
            i: "null_in_primary_key"
            if plan.columns[i].target in self.key_columns
            else "null_in_not_null_column"
            for i in self.required
        }
        self.excluded = plan.excluded_rowids
        self.trivial = not self.active and not self.required and not self.excluded

    def convert(self, rowid: int | None, values: tuple[Any, ...]) -> tuple[Any, ...]:
        if rowid is not None and rowid in self.excluded:
            raise RowRejected(self.excluded[rowid], None, None)
        if not self.active and not self.required:
            return values
        row = list(values)
        try:
            for i, convert in self.active:
                row[i] = convert(row[i])
        except Reject:
            for name, convert, value in zip(self.names, self.converters, values, strict=True):
                try:
                    convert(value)
                except Reject as exc:
                    raise RowRejected(exc.problem, name, value) from None
            raise
        for i in self.required:
            if row[i] is None:
                raise RowRejected(self.required_problem[i], self.names[i], None)
        return tuple(row)


class RowRejected(Exception):
    def __init__(self, problem: str, column: str | None, value: Any) -> None:
        super().__init__(problem)
        self.problem = problem
        self.column = column
        self.value = value
