"""The migration plan: for every source table, its target, column types, rules and chunks.

A plan is computed before anything is written (and is all `--dry-run` prints). It is plain data,
so worker processes receive it as is.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path

from runtime.migrate.arrow_scope import arrow_converts
from runtime.migrate.column_profile import ColumnProfile
from runtime.migrate.defaults import pg_default
from runtime.migrate.inference import choose_type, classes_seen, intent_of
from runtime.migrate.sizing import BATCH_ROWS, batch_rows, chunk_rows_for
from runtime.migrate.snapshot import Source
from runtime.migrate.sqlite_source import (
    QUOTED,
    ForeignKeyViolation,
    Table,
    count_nul_texts,
    issued_ids,
    profile_table,
    rowid_bounds,
    split_rowids,
)
from runtime.migrate.values import base_type

PG_NAME_BYTES = 63  # NAMEDATALEN - 1: PostgreSQL silently truncates longer identifiers


def quote_ident(name: str) -> str:
    """Always quote: reserved words, mixed case, spaces and quotes then need no special case."""
    return '"' + name.replace('"', '""') + '"'


def truncated(name: str) -> str:
    """The name PostgreSQL would store: at most 63 bytes, cut at a character boundary."""
    encoded = name.encode("utf-8")
    if len(encoded) <= PG_NAME_BYTES:
        return name
    return encoded[:PG_NAME_BYTES].decode("utf-8", errors="ignore")


def generated_name(*parts: str, suffix: str) -> str:
    """A constraint/index name that fits in 63 bytes and stays unique (hash of the full name)."""
    full = "_".join((*parts, suffix))
    if len(full.encode("utf-8")) <= PG_NAME_BYTES:
        return full
    digest = hashlib.sha1(full.encode("utf-8")).hexdigest()[:8]
    room = PG_NAME_BYTES - len(suffix) - len(digest) - 2
    head = "_".join(parts).encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return f"{head}_{digest}_{suffix}"


@dataclass(frozen=True)
class ColumnPlan:
    source: str
    target: str
    pg_type: str  # full type with modifiers, e.g. numeric(10,2)
    not_null: bool
    identity: bool
    note: str  # why this type: shown by --dry-run
    #: The profile proves every stored value is already what PostgreSQL gets (no rule applies);
    #: or, in a plan from declared types, the copy is to prove it (TablePlan.basis).
    passthrough: bool = False
    #: "C" for text compared bytewise in SQLite (its BINARY collation); None: the default.
    collation: str | None = None
    #: The storage classes the profile counted (typeof() name -> values); None: not profiled
    #: (a plan from declared types, or existing mode). Shown by --dry-run and the report.
    classes: dict[str, int] | None = None
    #: PostgreSQL's DEFAULT expression for the column (defaults.py); None: none.
    default: str | None = None

    @property
    def converter(self) -> str:
        return base_type(self.pg_type)


@dataclass(frozen=True)
class Constraint:
    kind: str  # primary_key | unique | index | foreign_key
    name: str
    sql: str  # the statement that creates it
    #: What a key, unique constraint or index covers (the target's columns); a plain index of
    #: these stands in where PostgreSQL finds the values not unique (keys.py).
    columns: tuple[str, ...] = ()


@dataclass
class TablePlan:
    source_name: str  # logical name of the source (its file stem or logical db)
    source_path: str  # the snapshot file
    table: str  # the SQLite table
    schema: str
    target: str  # the PostgreSQL table
    columns: list[ColumnPlan]
    key: tuple[str, ...]  # the primary key's target columns; empty: none
    rowid_key: bool  # the key is the single INTEGER PRIMARY KEY (rowid alias): ranges by id
    without_rowid: bool
    source_key: tuple[str, ...]  # source columns naming a row in reject files
    rows: int
    chunks: list[tuple[int, int]]  # rowid ranges; one (0, -1) chunk when not rowid-addressable
    create_sql: str | None  # None in existing mode: the table is already there
    constraints: list[Constraint] = field(default_factory=list)
    identity_column: str | None = None
    #: Rows per batch read or written at once (sizing.py).
    batch_rows: int = BATCH_ROWS
    #: What the source's SELECTs call the rowid (Table.rowid_name).
    rowid_name: str = "rowid"
    #: The largest id SQLite issued for an AUTOINCREMENT table (sqlite_source.issued_ids).
    issued_ids: int | None = None
    excluded_rowids: dict[int, str] = field(default_factory=dict)  # rowid -> problem
    problems: dict[str, int] = field(default_factory=dict)
    #: What the column types rest on: "profile" (every stored value's class counted), or
    #: "declared" (infer mode: declared types that promise the fast copy; the copy checks the
    #: promise chunk by chunk and, where one breaks, the table is profiled and copied again).
    basis: str = "profile"

    @property
    def from_declared_types(self) -> bool:
        return self.basis == "declared"

    @property
    def hashed_in_key_order(self) -> bool:
        """Verification hashes rows in key order only where the key is the integer rowid alias,
        whose order and uniqueness both sides share. Any other key can sort otherwise once
        converted (2 and '10' in an untyped column become texts; DATETIME texts in two zones
        become instants) or even stop being unique: such tables are hashed as a multiset."""
        return self.rowid_key

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.target)}"

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.target}"


def infer_type(declared: str, profile: ColumnProfile, rowid_alias: bool) -> tuple[str, str]:
    """PostgreSQL type for a SQLite column from its stored classes and declared type (the
    rules: inference.py)."""
    return choose_type(declared, profile, rowid_alias)


def is_passthrough(pg_type: str, profile: ColumnProfile, not_null: bool) -> bool:
    """True when the stored classes already match the target type, so no rule can fire."""
    if not_null and profile.null:
        return False
    if profile.blob:
        return False
    if pg_type == "bigint":
        return not (profile.real or profile.text)
    if pg_type == "double precision":
        return not (profile.integer or profile.text)
    if pg_type == "text":  # uncounted NUL bytes (None) are the fast copy's to find
        return not (profile.integer or profile.real or profile.nul_texts)
    return False


def check_identifiers(plans: list[TablePlan]) -> list[str]:
    """Names that PostgreSQL would truncate into each other: an error before any write."""
    errors: list[str] = []
    by_schema: dict[str, dict[str, str]] = {}
    for plan in plans:
        relations = by_schema.setdefault(plan.schema, {})
        names = [plan.target] + [c.name for c in plan.constraints if c.kind != "foreign_key"]
        for name in names:
            short = truncated(name)
            previous = relations.get(short)
            if previous is not None and previous != name:
                errors.append(
                    f"{plan.schema}: {previous!r} and {name!r} are the same name in PostgreSQL "
                    f"after truncation to 63 bytes ({short!r})"
                )
            elif previous == name and name == plan.target:
                errors.append(f"{plan.schema}: two sources both have a table {name!r}")
            relations[short] = name
        seen: dict[str, str] = {}
        for column in plan.columns:
            short = truncated(column.target)
            if short in seen and seen[short] != column.target:
                errors.append(
                    f"{plan.label}: columns {seen[short]!r} and {column.target!r} collide after "
                    "truncation to 63 bytes"
                )
            seen[short] = column.target
    return errors


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_case(name: str) -> str:
    """A SQLite name as PostgreSQL folds it unquoted. SQLite matches names ignoring the case of
    ASCII letters, quoted or not, so an application may write `Users`, `USERS` or "users" for
    one table; in PostgreSQL only the lower-case name answers them all unquoted (as pgloader's
    default). Only ASCII letters, as both fold: names SQLite holds apart stay apart."""
    return name.translate(_ASCII_LOWER)


def _kept(name: str) -> str:
    return name


def plan_chunks(low: int, high: int, count: int, chunk_rows: int) -> list[tuple[int, int]]:
    if count == 0:
        return [(0, -1)]
    return split_rowids(low, high, max(1, -(-count // chunk_rows)))


def violations_by_table(
    violations: list[ForeignKeyViolation], tables: list[Table]
) -> dict[str, dict[int, str]]:
    """Rows whose parent row is missing. A reference to a table that does not exist is no
    row's fault: its constraint is not created (`_constraints`) and its rows are copied."""
    names = {table.name.lower() for table in tables}
    result: dict[str, dict[int, str]] = {}
    for violation in violations:
        if violation.rowid is not None and violation.parent.lower() in names:
            result.setdefault(violation.table, {})[violation.rowid] = (
                f"foreign_key_to_missing_row:{violation.parent}"
            )
    return result


def plan_infer(
    source: Source,
    snapshot_path: Path,
    conn: sqlite3.Connection,
    tables: list[Table],
    violations: list[ForeignKeyViolation],
    chunk_rows: int,
    scanner: Executor | None = None,
    *,
    from_declared: bool = False,
    keep_case: bool = False,
) -> list[TablePlan]:
    """Plans of every table. With `from_declared`, a table whose declared types promise the
    fast copy is planned from them without a profile (see `declared_columns`)."""
    excluded = violations_by_table(violations, tables)
    pk_of = {table.name: table.primary_key for table in tables}
    return [
        plan_table(
            source,
            snapshot_path,
            conn,
            table,
            pk_of,
            chunk_rows,
            scanner,
            excluded=excluded.get(table.name, {}),
            from_declared=from_declared,
            keep_case=keep_case,
        )
        for table in tables
    ]


def plan_table(
    source: Source,
    snapshot_path: Path,
    conn: sqlite3.Connection,
    table: Table,
    pk_of: dict[str, tuple[str, ...]],
    chunk_rows: int,
    scanner: Executor | None = None,
    *,
    excluded: dict[int, str],
    from_declared: bool = False,
    keep_case: bool = False,
) -> TablePlan:
    """One table's plan; its PostgreSQL names are the SQLite names folded to lower case
    (`fold_case`), or kept as they are with `keep_case`."""
    fold = _kept if keep_case else fold_case
    alias = table.rowid_alias
    columns = declared_columns(table) if from_declared and not excluded else None
    basis = "profile" if columns is None else "declared"
    rows = None
    if columns is None:
        # NUL bytes are looked for by the fast copy (every batch, at memory speed) when it
        # takes the whole table - every column passthrough (only bigint, double precision and
        # text can be), keyed by its rowid, no row left out - and then by the columnar digest
        # on every path (arrow_copy.py, arrow_digest.py). SQLite's search of every text is
        # most of a profile's cost.
        # A column whose declared type names an intent (JSON, DATETIME, ...) takes a type the
        # fast copy cannot: NUL bytes are then counted in the same scan, not in a second one.
        intents = any(intent_of(c.declared).kind != "none" for c in table.copied_columns)
        profiles = profile_table(conn, table, scanner, count_nul=intents)
        columns = _infer_columns(table, profiles)
        fast_copy = all(c.passthrough for c in columns) and not excluded
        if not (alias is not None and fast_copy):
            count_nul_texts(conn, table, profiles, scanner)
            columns = _infer_columns(table, profiles)
        profiled = next(iter(profiles.values()), None)
        rows = None if profiled is None else profiled.null + profiled.non_null
    columns, lost_defaults = _with_defaults(table, columns)
    columns = [replace(c, target=fold(c.target)) for c in columns]
    low, high, count = rowid_bounds(conn, table, rows)
    file_bytes = snapshot_path.stat().st_size
    chunk_rows = chunk_rows_for(chunk_rows, file_bytes, count)
    chunks = [(0, -1)] if table.without_rowid else plan_chunks(low, high, count, chunk_rows)
    plan = TablePlan(
        source_name=source.name,
        source_path=str(snapshot_path),
        table=table.name,
        schema=source.schema,
        target=fold(table.name),
        columns=columns,
        key=tuple(map(fold, table.primary_key)),
        rowid_key=alias is not None,
        without_rowid=table.without_rowid,
        source_key=table.primary_key or ("rowid",),
        rows=count,
        chunks=chunks,
        create_sql=_create_table_sql(source.schema, fold(table.name), columns),
        identity_column=None if alias is None else fold(alias),
        issued_ids=issued_ids(conn, table),
        rowid_name=table.rowid_name,
        batch_rows=batch_rows(file_bytes, count),
        excluded_rowids=dict(excluded),
        basis=basis,
    )
    plan.constraints = _constraints(plan, table, pk_of, fold)
    for name in lost_defaults:  # the application's INSERTs that leave it out differ
        plan.problems[f"default_not_migrated:{name}"] = 1
    for column in table.columns:
        if column.hidden:  # its SQLite expression is not translated: the column is left out
            plan.problems[f"generated_column_not_migrated:{column.name}"] = 1
    # SQLite's SQL, not translated: texts compare bytewise or by the database's collation (a
    # NOCASE column matched 'new' for 'NEW').
    for collation in dict.fromkeys(table.collations):
        plan.problems[f"collation_not_migrated:{collation}"] = 1
    for problem in plan.excluded_rowids.values():
        plan.problems[problem] = plan.problems.get(problem, 0) + 1
    return plan


#: Declared-type affinities whose values the fast copy takes as they are stored, and what the
#: copy must check itself (arrow_copy.py): INTEGER affinity holds integers, or reals and texts
#: the SQLite driver refuses in an int64 column; REAL affinity reads every number as a real, and
#: the driver refuses texts and blobs in a double column; TEXT affinity stores numbers as text,
#: but a blob is what the driver would read into a string column in silence: each chunk's
#: census counts its text columns' storage classes before they are read (arrow_copy.py).
#: Declared intents (JSON, BOOLEAN, DATE, DATETIME, DECIMAL(p,s), MONEY) take the type a profile
#: gives a column whose every value matches, where the Arrow rules convert it (arrow_scope.py):
#: they accept only values the profile's checks accept, and anything else replans the table.
_DECLARED_PASSTHROUGH = ("bigint", "double precision", "text")


def declared_columns(table: Table) -> list[ColumnPlan] | None:
    """The columns of a rowid-keyed table from its declared types alone, when every one of them
    promises a type the fast copy passes through or converts; else None (the profile decides)."""
    if table.rowid_alias is None or not table.copied_columns:
        return None
    empty = ColumnProfile()
    columns = _infer_columns(table, {c.name: empty for c in table.copied_columns}, profiled=False)
    declared = {c.name: c.declared for c in table.copied_columns}
    for column in columns:
        if not declared[column.source]:
            return None  # an untyped column's type comes from its data
        if column.pg_type not in _DECLARED_PASSTHROUGH and not arrow_converts(column.pg_type, None):
            return None
    return columns


def _infer_columns(
    table: Table, profiles: dict[str, ColumnProfile], *, profiled: bool = True
) -> list[ColumnPlan]:
    alias = table.rowid_alias
    columns = []
    for column in table.copied_columns:
        profile = profiles[column.name]
        not_null = column.not_null or column.pk_position > 0
        pg_type, note = infer_type(column.declared, profile, column.name == alias)
        if not profiled:
            note = f"declared {column.declared}: {pg_type}, proven by the copy (not profiled)"
        columns.append(
            ColumnPlan(
                source=column.name,
                target=column.name,
                pg_type=pg_type,
                not_null=not_null,
                identity=column.name == alias,
                note=note,
                passthrough=is_passthrough(pg_type, profile, not_null),
                collation="C" if pg_type == "text" and table.binary_collation else None,
                classes=classes_seen(profile) if profiled else None,
            )
        )
    return columns


def _with_defaults(table: Table, columns: list[ColumnPlan]) -> tuple[list[ColumnPlan], list[str]]:
    """The columns with their defaults; the names of the columns whose default has none."""
    source = {c.name: c for c in table.columns}
    result, lost = [], []
    for column in columns:
        expression = source[column.source].default
        if expression is None or column.identity:
            result.append(column)
            continue
        translated = pg_default(expression, source[column.source].declared, column.converter)
        if translated is None:
            lost.append(column.source)
        result.append(replace(column, default=translated or None))
    return result, lost


def _create_table_sql(schema: str, name: str, columns: list[ColumnPlan]) -> str:
    lines = []
    for column in columns:
        line = f"{quote_ident(column.target)} {column.pg_type}"
        if column.collation is not None:
            line += f" COLLATE {quote_ident(column.collation)}"
        if column.identity:
            line += " GENERATED BY DEFAULT AS IDENTITY"
        if column.default is not None:
            line += f" DEFAULT {column.default}"
        if column.not_null:
            line += " NOT NULL"
        lines.append(line)
    body = ",\n    ".join(lines)
    return f"CREATE TABLE {quote_ident(schema)}.{quote_ident(name)} (\n    {body}\n)"


_JSON_VALID = re.compile(
    r'\(?\s*JSON_VALID\(\s*"?(\w+)"?\s*\)(\s+OR\s+"?(\w+)"?\s+IS\s+NULL)?\s*\)?',
    re.IGNORECASE,
)


_ZERO_ONE = re.compile(r'\(?\s*"?(\w+)"?\s+IN\s*\(\s*(0\s*,\s*1|1\s*,\s*0)\s*\)\s*\)?', re.I)
#: The kinds of check a column type makes for itself, and those types.
_IMPLYING_TYPES = {"json": ("json", "jsonb"), "boolean": ("boolean",)}


def _implied_check(expression: str) -> tuple[str | None, str]:
    """(column, kind) of a check its column's type may imply: `JSON_VALID(c) [OR c IS NULL]`
    (Django's JSONField on SQLite) or `c IN (0, 1)` (a boolean); (None, "") for any other."""
    match = _JSON_VALID.fullmatch(expression.strip())
    if match is not None and match.group(3) in (None, match.group(1)):
        return match.group(1), "json"
    match = _ZERO_ONE.fullmatch(expression.strip())
    if match is not None:
        return match.group(1), "boolean"
    return None, ""


def _pg_names(expression: str, fold: Callable[[str], str]) -> str:
    """A CHECK expression with its quoted names as PostgreSQL's: "x", `x` or [x], folded like
    the columns. Unquoted names fold by themselves; strings stay as they are."""

    def name(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return quote_ident(fold(match.group(1).replace('""', '"')))
        if match.group(2) is not None:
            return quote_ident(fold(match.group(2).replace("``", "`")))
        if match.group(3) is not None:
            return quote_ident(fold(match.group(3)))
        return match.group()

    return QUOTED.sub(name, expression)


def _column_list(columns: tuple[str, ...]) -> str:
    return ", ".join(quote_ident(c) for c in columns)


def _constraints(
    plan: TablePlan,
    table: Table,
    pk_of: dict[str, tuple[str, ...]],
    fold: Callable[[str], str],
) -> list[Constraint]:
    q = plan.qualified
    result = []
    key = tuple(map(fold, table.primary_key))
    if key:
        name = generated_name(plan.target, suffix="pkey")
        result.append(
            Constraint(
                "primary_key",
                name,
                f"ALTER TABLE {q} ADD CONSTRAINT {quote_ident(name)} "
                f"PRIMARY KEY ({_column_list(key)})",
                key,
            )
        )
    for index in table.indexes:
        columns = tuple(map(fold, index.columns))
        if index.origin == "u" and not (index.partial or index.expression):
            name = generated_name(plan.target, *columns, suffix="key")
            result.append(
                Constraint(
                    "unique",
                    name,
                    f"ALTER TABLE {q} ADD CONSTRAINT {quote_ident(name)} "
                    f"UNIQUE ({_column_list(columns)})",
                    columns,
                )
            )
        elif index.expression:
            plan.problems[f"expression_index_not_migrated:{index.name}"] = 1
        elif not index.partial:
            unique = "UNIQUE " if index.unique else ""
            result.append(
                Constraint(
                    "index",
                    fold(index.name),
                    f"CREATE {unique}INDEX {quote_ident(fold(index.name))} ON {q} "
                    f"({_column_list(columns)})",
                    columns,
                )
            )
        else:
            plan.problems["partial_index_not_migrated"] = (
                plan.problems.get("partial_index_not_migrated", 0) + 1
            )
    # Checks a column's type makes for itself: Django's JSONField on SQLite, 0/1 booleans.
    types = {c.source.lower(): c.converter for c in plan.columns}
    for number, expression in enumerate(table.checks, 1):
        column, kind = _implied_check(expression)
        if column is not None and types.get(column.lower()) in _IMPLYING_TYPES[kind]:
            continue
        name = generated_name(plan.target, str(number), suffix="check")
        result.append(
            Constraint(
                "check",
                name,
                f"ALTER TABLE {q} ADD CONSTRAINT {quote_ident(name)} "
                f"CHECK ({_pg_names(expression, fold)})",
            )
        )
    tables = {name.lower(): name for name in pk_of}
    for fk in table.foreign_keys:
        # SQLite accepts a REFERENCES to a table that does not exist (the constraint then
        # fails every write with foreign_keys=ON, so such applications run without it), and
        # matches table names case-insensitively.
        parent = fk.parent if fk.parent in pk_of else tables.get(fk.parent.lower())
        if parent is None:
            problem = f"foreign_key_to_missing_table:{fk.parent}"
            plan.problems[problem] = plan.problems.get(problem, 0) + 1
            continue
        parent_columns = tuple(map(fold, fk.parent_columns or pk_of.get(parent, ())))
        if not parent_columns:
            plan.problems["foreign_key_without_parent_key"] = (
                plan.problems.get("foreign_key_without_parent_key", 0) + 1
            )
            continue
        fk_columns = tuple(map(fold, fk.columns))
        name = generated_name(plan.target, *fk_columns, suffix="fkey")
        actions = ""
        for verb, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update)):
            if action and action.upper() != "NO ACTION":
                actions += f" ON {verb} {action.upper()}"
        result.append(
            Constraint(
                "foreign_key",
                name,
                f"ALTER TABLE {q} ADD CONSTRAINT {quote_ident(name)} "
                f"FOREIGN KEY ({_column_list(fk_columns)}) REFERENCES "
                f"{quote_ident(plan.schema)}.{quote_ident(fold(parent))} "
                f"({_column_list(parent_columns)}){actions}",
            )
        )
    return result
