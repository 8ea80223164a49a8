"""The reject file: one JSON line per row the copy left out, and reading back the rows the target
refused (a later `verify` or `--resume` leaves the same rows out of the source side)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.migrate.plan import TablePlan
from runtime.migrate.row_rules import RowRejected

VALUE_REPR_LIMIT = 200


def reject_record(
    plan: TablePlan,
    rowid: int | None,
    values: tuple[Any, ...],
    rejected: RowRejected,
    detail: str | None = None,
) -> dict[str, Any]:
    """One rejected row. Its `key` names the row in the source: the primary key's values, or the
    rowid (under the name SQLite reads it by, `_rowid_` or `oid` where a column is named
    rowid) for a table without one - and as well where a key value is NULL, which names no
    row. A WITHOUT ROWID table has no rowid, but needs none: SQLite keeps NULL out of its
    primary key, and the integrity check fails a file whose key holds one."""
    by_source = dict(zip((c.source for c in plan.columns), values, strict=True))
    if plan.source_key == ("rowid",):
        key: dict[str, Any] = {plan.rowid_name: rowid}
    else:
        key = {k: _jsonable(by_source.get(k)) for k in plan.source_key}
        if rowid is not None and None in key.values():
            key[plan.rowid_name] = rowid
    return {
        "source": plan.source_name,
        "table": plan.table,
        "target": plan.label,
        "key": key,
        "column": rejected.column,
        "problem": rejected.problem,
        "value": None if rejected.column is None else repr(rejected.value)[:VALUE_REPR_LIMIT],
        **({"detail": detail} if detail else {}),
    }


#: Marks the reject records of rows PostgreSQL refused (`load_refusals` reads them back).
REFUSED_BY = "postgresql"


def refusal_record(
    plan: TablePlan, rowid: int | None, values: tuple[Any, ...], problem: str, detail: str
) -> dict[str, Any]:
    """The reject record of a row the target refused; keeps the rowid, so a later verification
    (`domos migrate verify`, `--resume`) leaves the same rows out of the source side."""
    record = reject_record(plan, rowid, values, RowRejected(problem, None, None), detail)
    return {**record, "rowid": rowid, "refused_by": REFUSED_BY}


def load_refusals(*paths: Path) -> dict[str, dict[int, str]]:
    """Rows the target refused in an earlier run, per table label: rowid -> problem."""
    refusals: dict[str, dict[int, str]] = {}
    for path in paths:
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                if record.get("refused_by") == REFUSED_BY and record.get("rowid") is not None:
                    table = refusals.setdefault(record["target"], {})
                    table[int(record["rowid"])] = record["problem"]
    return refusals


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    return repr(value)
