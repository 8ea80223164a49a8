"""Which typed columns the Arrow rules (arrow_rules.py) convert: pure Python, so the planner and
the parent process decide it without loading pyarrow."""

from __future__ import annotations

from runtime.migrate.values import base_type

#: Target types the fast copy converts with its Arrow rules instead of the Python path's.
ARROW_RULE_TYPES = frozenset(
    {
        "boolean",
        "date",
        "timestamp with time zone",
        "timestamp without time zone",
        "numeric",
        "json",
        "jsonb",
    }
)
#: numeric scales the Arrow rules take (decimal128 prints them without an exponent).
MAX_ARROW_SCALE = 6


def numeric_modifiers(pg_type: str) -> tuple[int, ...]:
    """`numeric(10,2)` -> (10, 2); `numeric` -> ()."""
    if "(" not in pg_type:
        return ()
    inner = pg_type.split("(", 1)[1].rstrip(")")
    return tuple(int(part) for part in inner.split(","))


def arrow_converts(pg_type: str, classes: dict[str, int] | None) -> bool:
    """The fast copy converts a column of this type (no blob counted in it; a numeric that
    decimal128 holds at a scale of at most 6). `classes`: the profile's counts, if taken."""
    kind = base_type(pg_type)
    if kind not in ARROW_RULE_TYPES or (classes or {}).get("blob"):
        return False
    if kind == "numeric":
        modifiers = numeric_modifiers(pg_type)
        if modifiers:
            scale = modifiers[1] if len(modifiers) > 1 else 0
            return modifiers[0] <= 38 and scale <= MAX_ARROW_SCALE
    return True
