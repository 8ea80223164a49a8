"""What the profile of a source column counts: read by sqlite_source.py's scans, judged by
inference.py (which type holds every stored value)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ColumnProfile:
    """How many values of each SQLite storage class a column holds."""

    integer: int = 0
    real: int = 0
    text: int = 0
    blob: int = 0
    null: int = 0
    integral_reals: int = 0
    #: Texts holding a NUL byte (PostgreSQL text cannot store them); None: not counted by the
    #: profile, because the fast copy looks for them in every batch (plan.py decides).
    nul_texts: int | None = 0
    #: Integers beyond 2^53 (a double would round them), counted where reals are mixed in.
    wide_integers: int = 0
    #: Counts of the declared type's checks (inference.py `hint_sql`), taken only for columns
    #: whose declared type names that intent.
    json_texts: int = 0
    day_texts: int = 0
    datetime_values: int = 0
    boolean_values: int = 0
    decimal_values: int = 0
    decimal_fit: int = 0

    @property
    def non_null(self) -> int:
        return self.integer + self.real + self.text + self.blob
