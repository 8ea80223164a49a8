"""Static checks of the migration files: naming, portability rules, and names unique per schema."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "runtime" / "schema"
KNOWN_TOKENS = {"id", "timestamptz", "now", "bool", "json", "bytes", "text"}
FILE_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")
CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
CREATE_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(IF\s+NOT\s+EXISTS\s+)?(\w+)\s+ON\s+(\w+)", re.IGNORECASE
)
# Queues that a replica claims: the claim helper needs `id` and exactly these lease columns.
WORK_CLAIMING_TABLES = {
    "main": {"outbox", "provider_events", "payments", "charge_attempts", "moderation_actions"},
    "audio": {"audio_files"},
    "useful": {"chat_messages"},
}


def strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def migration_files(logical_db: str) -> list[Path]:
    return sorted((SCHEMA_DIR / logical_db).glob("*.sql"))


def statements(logical_db: str) -> list[str]:
    text = "\n".join(strip_comments(path.read_text()) for path in migration_files(logical_db))
    return [" ".join(part.split()) for part in text.split(";") if part.strip()]


def table_bodies(logical_db: str) -> dict[str, str]:
    bodies = {}
    for statement in statements(logical_db):
        match = CREATE_TABLE.match(statement)
        if match:
            bodies[match.group(1)] = statement
    return bodies


def column_definitions(table_body: str) -> list[tuple[str, str]]:
    """(name, first word of the type) of each column; table constraints left out."""
    inner = table_body[table_body.index("(") + 1 : table_body.rindex(")")]
    depth, parts, current = 0, [], []
    for char in inner:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    words = [part.split() for part in parts if part.strip()]
    constraints = {"UNIQUE", "CONSTRAINT", "PRIMARY", "FOREIGN", "CHECK"}
    return [(w[0], w[1]) for w in words if w[0].upper() not in constraints]


@pytest.mark.parametrize("logical_db", DOMAIN_DATABASES)
def test_files_are_numbered_from_one_without_gaps(logical_db: str) -> None:
    files = migration_files(logical_db)
    assert files, f"no migrations for {logical_db}"
    numbers = []
    for path in files:
        match = FILE_NAME.fullmatch(path.name)
        assert match, f"{path.name} is not NNNN_name.sql"
        numbers.append(int(match.group(1)))
    assert numbers == list(range(1, len(files) + 1))
    assert files[0].name == "0001_initial.sql"


def test_no_directory_for_unknown_or_django_databases() -> None:
    directories = {path.name for path in SCHEMA_DIR.iterdir() if path.is_dir()}
    directories.discard("__pycache__")
    assert directories == set(DOMAIN_DATABASES)


@pytest.mark.parametrize("logical_db", DOMAIN_DATABASES)
def test_only_known_dialect_tokens(logical_db: str) -> None:
    for path in migration_files(logical_db):
        tokens = set(re.findall(r"\{\{(\w+)\}\}", path.read_text()))
        assert tokens <= KNOWN_TOKENS, f"{path}: unknown tokens {tokens - KNOWN_TOKENS}"
        leftovers = re.findall(r"\{\{|\}\}", re.sub(r"\{\{\w+\}\}", "", path.read_text()))
        assert not leftovers, f"{path}: malformed token"


@pytest.mark.parametrize("logical_db", DOMAIN_DATABASES)
def test_no_schema_qualified_names(logical_db: str) -> None:
    schemas = {db.pg_schema for db in LOGICAL_DATABASES.values()} | {"public"}
    pattern = re.compile(r"\b(" + "|".join(sorted(schemas)) + r")\.\w", re.IGNORECASE)
    for statement in statements(logical_db):
        without_strings = re.sub(r"'[^']*'", "''", statement)
        assert not pattern.search(without_strings), statement


@pytest.mark.parametrize("logical_db", DOMAIN_DATABASES)
def test_every_table_starts_with_an_id_and_every_index_is_idempotent(logical_db: str) -> None:
    for name, body in table_bodies(logical_db).items():
        assert column_definitions(body)[0] == ("id", "{{id}}"), name
    for statement in statements(logical_db):
        match = CREATE_INDEX.match(statement)
        if match:
            assert match.group(1), f"index {match.group(2)} lacks IF NOT EXISTS"
            assert match.group(2).startswith(match.group(3) + "_"), (
                f"index {match.group(2)} should be prefixed with its table {match.group(3)}"
            )


@pytest.mark.parametrize("pg_schema", sorted({db.pg_schema for db in LOGICAL_DATABASES.values()}))
def test_table_and_index_names_unique_per_postgres_schema(pg_schema: str) -> None:
    sharing = [db.name for db in LOGICAL_DATABASES.values() if db.pg_schema == pg_schema]
    names: Counter[str] = Counter()
    for logical_db in sharing:
        if logical_db not in DOMAIN_DATABASES:
            continue
        names.update(table_bodies(logical_db).keys())
        for statement in statements(logical_db):
            match = CREATE_INDEX.match(statement)
            if match:
                names[match.group(2)] += 1
    duplicates = [name for name, count in names.items() if count > 1]
    assert not duplicates, f"names used twice in schema {pg_schema}: {duplicates}"


def test_bot_schema_tables_are_prefixed() -> None:
    prefixes = {"audio": ("audio_",), "nmarket": ("nmarket_",), "tradeagent": ("tradeagent_",)}
    prefixes["useful"] = ("chat_", "useful_")
    for logical_db, allowed in prefixes.items():
        for table in table_bodies(logical_db):
            assert table.startswith(allowed), f"{logical_db}.{table} lacks its prefix"


@pytest.mark.parametrize(
    ("logical_db", "table"),
    [(db, table) for db, tables in WORK_CLAIMING_TABLES.items() for table in sorted(tables)],
)
def test_work_claiming_tables_have_lease_columns(logical_db: str, table: str) -> None:
    body = table_bodies(logical_db)[table]
    assert "lease_owner {{text}} NULL" in body
    assert "lease_expires_at {{timestamptz}} NULL" in body
    due_indexes = [
        statement
        for statement in statements(logical_db)
        if (match := CREATE_INDEX.match(statement))
        and match.group(3) == table
        and " WHERE " in statement
    ]
    assert due_indexes, f"{table} has no partial index for its due query"


def test_lease_columns_only_on_work_claiming_tables() -> None:
    for logical_db in DOMAIN_DATABASES:
        for table, body in table_bodies(logical_db).items():
            has_lease = "lease_owner" in body
            assert has_lease == (table in WORK_CLAIMING_TABLES.get(logical_db, set())), table


def test_tradeagent_is_nmarket_with_another_prefix() -> None:
    nmarket = [s.replace("nmarket_", "tradeagent_") for s in statements("nmarket")]
    assert statements("tradeagent") == nmarket


def test_advert_and_contract_have_the_same_tables() -> None:
    assert statements("advert") == statements("contract")


def test_readme_documents_every_table() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text()
    headings = {
        name.strip()
        for line in readme.splitlines()
        if line.startswith("### ")
        for name in line[4:].split(",")
    }
    for logical_db in DOMAIN_DATABASES:
        for table in table_bodies(logical_db):
            generic = re.sub(r"^(nmarket|tradeagent)_", "<p>_", table)
            assert table in headings or f"- `{generic}`:" in readme, f"{table} is not documented"


def test_money_columns_are_bigint_minor_units() -> None:
    for logical_db in DOMAIN_DATABASES:
        for table, body in table_bodies(logical_db).items():
            for name, column_type in column_definitions(body):
                if "price" not in name and "amount" not in name:
                    continue
                assert name.endswith("_minor"), (table, name)
                assert column_type == "BIGINT", (table, name)
