"""The SQLite side: snapshot, health checks, schema introspection and storage-class profiles.

The source file is never written: it is copied with the online backup API into the work
directory (a consistent copy even while the application writes), and every later read goes to
that snapshot, opened read-only.
"""

from __future__ import annotations

import re
import sqlite3
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runtime.errors import MigrationError
from runtime.migrate.column_profile import ColumnProfile
from runtime.migrate.inference import DOUBLE_EXACT, hint_sql, intent_of
from runtime.migrate.sizing import usable_cpus
from runtime.migrate.values import decode_text

#: Tables SQLite and its tools maintain themselves; never data to migrate.
INTERNAL_TABLES = frozenset(
    {"sqlite_sequence", "sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4"}
)


def open_snapshot(path: Path, *, strict_utf8: bool = False) -> sqlite3.Connection:
    """Read-only connection whose TEXT values arrive as str, or InvalidText for bad UTF-8.

    strict_utf8 uses sqlite3's own (C) decoding, much faster, which raises
    sqlite3.OperationalError on invalid UTF-8; callers then redo the work without it.
    """
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    if not strict_utf8:
        conn.text_factory = decode_text
    return conn


@dataclass(frozen=True)
class ForeignKeyViolation:
    table: str
    rowid: int | None
    parent: str


def foreign_key_violations(conn: sqlite3.Connection) -> list[ForeignKeyViolation]:
    return [
        ForeignKeyViolation(table=row[0], rowid=row[1], parent=row[2])
        for row in conn.execute("PRAGMA foreign_key_check")
    ]


@dataclass(frozen=True)
class Column:
    name: str
    declared: str  # declared type as written, upper-cased
    not_null: bool
    pk_position: int  # 1-based position in the primary key, 0 when not part of it
    hidden: bool  # generated columns are recomputed by PostgreSQL, never copied
    default: str | None = None  # the DEFAULT expression as written; None: none


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool
    origin: str  # c = CREATE INDEX, u = UNIQUE constraint, pk = primary key
    partial: bool
    expression: bool = False  # indexes an expression: `columns` holds only its plain columns


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]  # empty tuple means the parent's primary key
    on_delete: str
    on_update: str


@dataclass
class Table:
    name: str
    columns: list[Column]
    without_rowid: bool
    autoincrement: bool
    indexes: list[Index] = field(default_factory=list)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    #: Every column and index compares text bytewise (SQLite's default BINARY collation: no
    #: COLLATE clause anywhere), which is PostgreSQL's "C" collation.
    binary_collation: bool = True
    #: Collations other than BINARY its columns and indexes use (NOCASE, RTRIM, ...): not
    #: carried over (reported by the plan).
    collations: tuple[str, ...] = ()
    #: Its CHECK constraints' expressions, as written (carried over where PostgreSQL takes them).
    checks: tuple[str, ...] = ()
    #: The primary key has an index of its own: it is not the rowid (INTEGER PRIMARY KEY DESC is
    #: not an alias of the rowid, whatever its declared type says).
    primary_key_index: bool = False

    @property
    def primary_key(self) -> tuple[str, ...]:
        keyed = sorted((c for c in self.columns if c.pk_position), key=lambda c: c.pk_position)
        return tuple(c.name for c in keyed)

    @property
    def rowid_alias(self) -> str | None:
        """The INTEGER PRIMARY KEY column, which is the rowid itself (an identity in PG)."""
        pk = self.primary_key
        if self.without_rowid or self.primary_key_index or len(pk) != 1:
            return None
        column = next(c for c in self.columns if c.name == pk[0])
        return column.name if column.declared == "INTEGER" else None

    @property
    def rowid_name(self) -> str:
        """A name of the rowid no column shadows (`SELECT rowid` reads a column named rowid);
        "rowid" for a WITHOUT ROWID table, which has none."""
        alias = self.rowid_alias
        shadowing = {c.name.lower() for c in self.columns if c.name != alias}
        if self.without_rowid:
            return "rowid"
        for name in ROWID_NAMES:
            if name not in shadowing:
                return name
        raise MigrationError(
            f"table {self.name!r} has columns named rowid, _rowid_ and oid: SQLite cannot "
            "address its rows by rowid; rename one of them in a copy of the file"
        )

    @property
    def copied_columns(self) -> list[Column]:
        return [c for c in self.columns if not c.hidden]


def issued_ids(conn: sqlite3.Connection, table: Table) -> int | None:
    """The largest id an AUTOINCREMENT table has ever issued (sqlite_sequence), deleted rows'
    included: SQLite never issues it again, so neither may PostgreSQL."""
    if not table.autoincrement:
        return None
    row = conn.execute("SELECT max(seq) FROM sqlite_sequence WHERE name = ?", (table.name,))
    value = row.fetchone()[0]
    return value if isinstance(value, int) else None


def views_and_triggers(conn: sqlite3.Connection) -> list[str]:
    """What the migration does not carry over (their SQL is SQLite's): "view NAME", "trigger
    NAME"."""
    rows = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY type, name"
    )
    return [f"{kind} {name}" for kind, name in rows]


#: A string, or a name quoted in any of SQLite's ways (groups 1 to 3: the name within "", ``
#: or []).
QUOTED = re.compile(r"'(?:[^']|'')*'|\"((?:[^\"]|\"\")*)\"|`((?:[^`]|``)*)`|\[([^\]]*)\]")
_COLLATE = re.compile(r"\bCOLLATE\s+(\w+)")
#: SQLite's SQL as tokens that matter to find a clause: quoted runs, words, parentheses.
_TOKENS = re.compile(QUOTED.pattern + r"|\w+|[()]|[^\w()'\"`\[]+")


def check_expressions(create_sql: str) -> tuple[str, ...]:
    """The expressions of a CREATE TABLE's CHECK constraints, as written: what follows the word
    CHECK, inside its parentheses (quoted strings and names may hold any of them)."""
    tokens = [match.group() for match in _TOKENS.finditer(create_sql)]
    found = []
    for i, token in enumerate(tokens):
        if token.upper() != "CHECK":
            continue
        start = next((j for j in range(i + 1, len(tokens)) if tokens[j].strip()), None)
        if start is None or tokens[start] != "(":
            continue
        depth = 0
        for end in range(start, len(tokens)):
            depth += {"(": 1, ")": -1}.get(tokens[end], 0)
            if depth == 0:
                found.append("".join(tokens[start + 1 : end]).strip())
                break
    return tuple(found)


#: The names SQLite gives the rowid of a rowid table, unless a column takes them.
ROWID_NAMES = ("rowid", "_rowid_", "oid")


def quote_sqlite(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_rows(name: str) -> str:
    """A table in a FROM clause that reads its rows from the table's own b-tree, never from an
    index: what is copied and verified cannot depend on an index's content, which the
    integrity check does not compare with its table (integrity_gate.py). Rowid ranges and
    WITHOUT ROWID primary keys still seek in the table."""
    return f"{quote_sqlite(name)} NOT INDEXED"


def read_tables(conn: sqlite3.Connection) -> list[Table]:
    rows = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
    ).fetchall()
    tables = []
    for name, create_sql in rows:
        if name in INTERNAL_TABLES or name.startswith("sqlite_"):
            continue
        if create_sql is not None and create_sql.upper().startswith("CREATE VIRTUAL"):
            raise MigrationError(f"virtual table {name!r} cannot be migrated")
        tables.append(_read_table(conn, name, create_sql or ""))
    _name_parents_as_declared(tables)
    return tables


def _name_parents_as_declared(tables: list[Table]) -> None:
    """A foreign key's parent table and columns as their own CREATE TABLE spells them: SQLite
    matches `REFERENCES USERS(ID)` to users(id) ignoring case, PostgreSQL's quoted names do not."""
    by_name = {table.name.lower(): table for table in tables}
    for table in tables:
        for i, fk in enumerate(table.foreign_keys):
            parent = by_name.get(fk.parent.lower())
            if parent is None:
                continue
            names = {column.name.lower(): column.name for column in parent.columns}
            columns = tuple(names.get(c.lower(), c) for c in fk.parent_columns)
            table.foreign_keys[i] = replace(fk, parent=parent.name, parent_columns=columns)


#: Clauses of a CREATE TABLE, as words (a column named collated_at is no COLLATE clause).
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b")
_COLLATE_CLAUSE = re.compile(r"\bCOLLATE\b")
_WITHOUT_ROWID = re.compile(r"\)\s*(?:STRICT\s*,\s*)?WITHOUT\s+ROWID\b")


def _without_rowid(conn: sqlite3.Connection, name: str, bare: str) -> bool:
    """SQLite's own answer (table_list's `wr`, 3.37+); before it, the clause after the columns,
    STRICT beside it or a comment after it (`bare`: the statement without names or strings)."""
    try:
        rows = conn.execute("SELECT wr FROM pragma_table_list WHERE name = ?", (name,)).fetchall()
    except sqlite3.OperationalError:
        rows = []
    if rows:
        return bool(rows[0][0])
    return _WITHOUT_ROWID.search(bare) is not None


def _read_table(conn: sqlite3.Connection, name: str, create_sql: str) -> Table:
    quoted = quote_sqlite(name)
    columns = [
        Column(
            name=row[1],
            declared=(row[2] or "").upper().strip(),
            not_null=bool(row[3]),
            pk_position=row[5],
            hidden=row[6] != 0,
            default=row[4],
        )
        for row in conn.execute(f"PRAGMA table_xinfo({quoted})")
    ]
    normalized = " ".join(create_sql.upper().split())
    bare = QUOTED.sub(" ", normalized)  # no name or string can look like a clause
    table = Table(
        name=name,
        columns=columns,
        without_rowid=_without_rowid(conn, name, bare),
        autoincrement=_AUTOINCREMENT.search(bare) is not None,
        binary_collation=_COLLATE_CLAUSE.search(bare) is None,
        collations=tuple(c for c in _COLLATE.findall(bare) if c != "BINARY"),
        checks=check_expressions(create_sql),
    )
    for row in conn.execute(f"PRAGMA index_list({quoted})"):
        index_name, unique, origin, partial = row[1], bool(row[2]), row[3], bool(row[4])
        # index_xinfo: (seqno, cid, name, desc, collation, key); key 0 marks the rowid
        keys = [
            info
            for info in conn.execute(f"PRAGMA index_xinfo({quote_sqlite(index_name)})")
            if info[5]
        ]
        if any(info[4] != "BINARY" for info in keys):
            table.binary_collation = False
            table.collations += tuple(info[4].upper() for info in keys if info[4] != "BINARY")
        if origin == "pk":
            table.primary_key_index = True
            continue
        index_columns = tuple(info[2] for info in keys if info[2] is not None)
        expression = len(index_columns) < len(keys)
        table.indexes.append(Index(index_name, index_columns, unique, origin, partial, expression))
    grouped: dict[int, list[tuple[str, str | None, str, str, str]]] = {}
    for row in conn.execute(f"PRAGMA foreign_key_list({quoted})"):
        grouped.setdefault(row[0], []).append((row[3], row[4], row[2], row[6], row[5]))
    for _, parts in sorted(grouped.items()):
        parent_columns = tuple(p[1] for p in parts if p[1] is not None)
        table.foreign_keys.append(
            ForeignKey(
                columns=tuple(p[0] for p in parts),
                parent=parts[0][2],
                parent_columns=parent_columns,
                on_delete=parts[0][3],
                on_update=parts[0][4],
            )
        )
    return table


#: SQLite's storage classes as typeof() names them, in the order min()/max() compare them.
_CLASS_ORDER = ("blob", "integer", "null", "real", "text")


def _single_class(low: str, high: str) -> str | None:
    """The one non-null storage class a column holds, if min/max of typeof() prove it."""
    between = _CLASS_ORDER[_CLASS_ORDER.index(low) + 1 : _CLASS_ORDER.index(high)]
    classes = {low, high} - {"null"}
    if len(classes) == 1 and not (set(between) - {"null"}):
        return classes.pop()
    return None


def _needs_integral_count(column: Column) -> bool:
    # Integral reals decide the type only where the declared type allows integers.
    return "INT" in column.declared or not column.declared


def _likely_text(column: Column) -> bool:
    declared = column.declared
    return not declared or any(word in declared for word in ("CHAR", "CLOB", "TEXT"))


def _full_profile_sql(q: str) -> list[str]:
    return [
        f"sum(typeof({q}) = 'integer')",
        f"sum(typeof({q}) = 'real')",
        f"sum(typeof({q}) = 'text')",
        f"sum(typeof({q}) = 'blob')",
        f"sum({q} IS NULL)",
        f"sum(typeof({q}) = 'real' AND {q} = CAST({q} AS INTEGER))",
        f"sum(typeof({q}) = 'text' AND {_nul_sql(q)})",
        f"sum(typeof({q}) = 'integer' AND ({q} > {DOUBLE_EXACT} OR {q} < -{DOUBLE_EXACT}))",
    ]


def profile_table(
    conn: sqlite3.Connection,
    table: Table,
    scanner: Executor | None = None,
    *,
    count_nul: bool = True,
) -> dict[str, ColumnProfile]:
    """Counts of typeof() per column, in at most two scans done by SQLite (in C).

    The first scan takes min/max of typeof() and the non-null count per column, which settles
    the usual column holding one storage class, and counts what such a column still needs where
    its declared type makes it likely: NUL bytes in text-affinity columns, integral reals where
    integers are allowed (both counts are exact when the column holds that one class). A second
    scan, only when needed, counts what the first could not tell: mixed classes, or a class the
    declared type did not announce. Without `count_nul`, NUL bytes in single-class text columns
    are left uncounted (None): searching every text is most of a profile's cost.
    """
    columns = table.copied_columns
    if not columns:
        return {}
    parts = []
    guessed: dict[str, dict[str, int]] = {}  # column -> {"nul"|"integral": position}
    for c in columns:
        q = quote_sqlite(c.name)
        parts.append(f"min(typeof({q}))")
        parts.append(f"max(typeof({q}))")
        parts.append(f"count({q})")
        guesses = guessed[c.name] = {}
        if count_nul and _likely_text(c):
            guesses["nul"] = len(parts)
            parts.append(f"sum({_nul_sql(q)})")
        if _needs_integral_count(c) and not c.declared.startswith("INT"):
            guesses["integral"] = len(parts)
            parts.append(f"sum(typeof({q}) = 'real' AND {q} = CAST({q} AS INTEGER))")
        for hint, condition in hint_sql(intent_of(c.declared), q).items():
            guesses[hint] = len(parts)
            parts.append(f"sum({condition})")
    merges = ["sum"]
    for c in columns:
        merges += ["min", "max", "sum"] + ["sum"] * len(guessed[c.name])
    first = _scan(conn, table, ["count(*)", *parts], merges, scanner)
    total = int(first[0] or 0)
    values = first[1:]
    profiles: dict[str, ColumnProfile] = {}
    second: list[tuple[Column, str, list[str]]] = []
    position = 0
    for column in columns:
        low, high, non_null = values[position : position + 3]
        position += 3 + len(guessed[column.name])
        q = quote_sqlite(column.name)
        profile = ColumnProfile(null=total - int(non_null))
        profiles[column.name] = profile
        hints = {
            name: int(values[at] or 0)
            for name, at in guessed[column.name].items()
            if name in _HINTS
        }
        for name, count in hints.items():
            setattr(profile, name, count)
        if not non_null:
            continue
        single = _single_class(low, high)
        if single is None:
            second.append((column, "full", _full_profile_sql(q)))
            continue
        setattr(profile, single, int(non_null))
        guesses = guessed[column.name]
        if single == "text":
            if "nul" in guesses:
                profile.nul_texts = int(values[guesses["nul"]] or 0)
            elif count_nul:
                second.append((column, "nul", [_nul_sql(q)]))
            else:
                profile.nul_texts = None
        elif single == "real" and _needs_integral_count(column):
            if "integral" in guesses:
                profile.integral_reals = int(values[guesses["integral"]] or 0)
            else:
                second.append((column, "integral", [f"sum({q} = CAST({q} AS INTEGER))"]))
    if second:
        expressions = [e for _, _, exprs in second for e in exprs]
        row = _scan(conn, table, expressions, ["sum"] * len(expressions), scanner)
        position = 0
        for column, kind, exprs in second:
            values = [int(v or 0) for v in row[position : position + len(exprs)]]
            position += len(exprs)
            if kind == "full":
                integer, real, text, blob, null, integral, nul, wide = values
                full = ColumnProfile(
                    integer, real, text, blob, null, integral, nul, wide_integers=wide
                )
                for name in _HINTS:
                    setattr(full, name, getattr(profiles[column.name], name))
                profiles[column.name] = full
            elif kind == "nul":
                profiles[column.name].nul_texts = values[0]
            else:
                profiles[column.name].integral_reals = values[0]
    return profiles


#: The profile fields filled from `inference.hint_sql` conditions.
_HINTS = (
    "json_texts",
    "day_texts",
    "datetime_values",
    "boolean_values",
    "decimal_values",
    "decimal_fit",
)


def _nul_sql(q: str) -> str:
    return f"instr(CAST({q} AS BLOB), x'00') > 0"


def count_nul_texts(
    conn: sqlite3.Connection,
    table: Table,
    profiles: dict[str, ColumnProfile],
    scanner: Executor | None = None,
) -> None:
    """Count what `profile_table(count_nul=False)` left uncounted, in one scan."""
    names = [name for name, profile in profiles.items() if profile.nul_texts is None]
    if not names:
        return
    expressions = [f"sum({_nul_sql(quote_sqlite(name))})" for name in names]
    row = _scan(conn, table, expressions, ["sum"] * len(expressions), scanner)
    for name, count in zip(names, row, strict=True):
        profiles[name].nul_texts = int(count or 0)


#: Rows below which a table is profiled in one scan.
PARALLEL_SCAN_ROWS = 100_000


def _scan(
    conn: sqlite3.Connection,
    table: Table,
    expressions: list[str],
    merges: list[str],
    scanner: Executor | None,
) -> list[Any]:
    """One aggregate row over the whole table. With a `scanner` (the migration's worker
    processes), a large rowid table is scanned in rowid ranges in parallel and the rows are
    merged per expression: `sum` adds (counts too), `min`/`max` compare. Processes, not threads:
    SQLite threads in one process contend on its allocator mutex (1.84 core-s against 1.29)."""
    select = f"SELECT {', '.join(expressions)} FROM {table_rows(table.name)}"
    ranges = _scan_ranges(conn, table, scanner)
    if len(ranges) == 1:
        return list(conn.execute(select).fetchone())
    assert scanner is not None
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    where = select + f" WHERE {table.rowid_name} BETWEEN ? AND ?"
    rows = [
        future.result() for future in [scanner.submit(scan_range, path, where, r) for r in ranges]
    ]
    merged: list[Any] = []
    for i, merge in enumerate(merges):
        values = [row[i] for row in rows if row[i] is not None]
        if not values:
            merged.append(None)
        elif merge == "min":
            merged.append(min(values))
        elif merge == "max":
            merged.append(max(values))
        else:
            merged.append(sum(values))
    return merged


def scan_range(path: str, select: str, bounds: tuple[int, int]) -> tuple[Any, ...]:
    """One range of `_scan`, in a worker process."""
    conn = open_snapshot(Path(path), strict_utf8=True)
    try:
        row: tuple[Any, ...] = conn.execute(select, bounds).fetchone()
        return row
    finally:
        conn.close()


def _scan_ranges(
    conn: sqlite3.Connection, table: Table, scanner: Executor | None
) -> list[tuple[int, int]]:
    workers = usable_cpus()
    if scanner is None or table.without_rowid or workers == 1:
        return [(0, -1)]
    name = quote_sqlite(table.name)
    bounds = _rowid_range(conn, name, table.rowid_name)
    if bounds is None or bounds[1] - bounds[0] < PARALLEL_SCAN_ROWS:
        return [(0, -1)]
    low, high = bounds
    return split_rowids(low, high, workers)


def split_rowids(low: int, high: int, pieces: int) -> list[tuple[int, int]]:
    """Rowid ranges covering low..high in at most `pieces` equal spans."""
    step = max(1, -(-(high - low + 1) // pieces))
    return [(start, min(start + step - 1, high)) for start in range(low, high + 1, step)]


def _rowid_range(conn: sqlite3.Connection, name: str, rowid: str) -> tuple[int, int] | None:
    """(min rowid, max rowid), None for an empty table. Two subqueries: SQLite answers a lone
    min() or max() of the rowid from the b-tree's ends, but both in one SELECT scan the table."""
    low, high = conn.execute(
        f"SELECT (SELECT min({rowid}) FROM {name}), (SELECT max({rowid}) FROM {name})"
    ).fetchone()
    return None if low is None else (int(low), int(high))


def rowid_bounds(
    conn: sqlite3.Connection, table: Table, count: int | None = None
) -> tuple[int, int, int]:
    """(min rowid, max rowid, row count); (0, -1, 0) for an empty table. A `count` the caller
    already has (the profile's) saves the full scan count(*) needs."""
    name = quote_sqlite(table.name)
    if count is None:
        count = int(conn.execute(f"SELECT count(*) FROM {table_rows(table.name)}").fetchone()[0])
    bounds = (
        None if table.without_rowid or not count else _rowid_range(conn, name, table.rowid_name)
    )
    if bounds is None:
        return 0, -1, count
    return bounds[0], bounds[1], count
