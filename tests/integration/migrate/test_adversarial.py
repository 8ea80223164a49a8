"""Adversarial databases: every data problem ends converted by its rule or rejected, counted."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from runtime.errors import MigrationError
from runtime.migrate import plan_phase
from runtime.migrate.engine import verify_only
from runtime.migrate.plan import Source
from runtime.migrate.run import Options

pytestmark = pytest.mark.postgres


def _constraints(pg_url: str, schema: str, kind: str) -> list[tuple[str, str]]:
    """(name, definition) of a schema's constraints of one kind (pg_constraint.contype)."""
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = %s AND connamespace = %s::regnamespace ORDER BY conname",
            (kind, schema),
        ).fetchall()


def _adversarial(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE "user" (id INTEGER PRIMARY KEY, "Full Name" TEXT, "we""ird" TEXT);
        CREATE TABLE "order" (
            code TEXT PRIMARY KEY,
            user_id INTEGER REFERENCES "user"(id),
            qty INTEGER,
            paid BOOLEAN,
            created_at DATETIME,
            price REAL,
            note
        );
        CREATE INDEX "order by user" ON "order"(user_id, created_at);
        CREATE TABLE log (message TEXT, at TIMESTAMP);
        """
    )
    conn.executemany(
        'INSERT INTO "user" VALUES (?, ?, ?)', [(1, "Ann", 'q"uote'), (2, "Bob", None)]
    )
    rows = [
        ("ok-1", 1, 5, 1, "2024-01-02 03:04:05", 9.5, "x"),
        ("ok-2", 2, "42", 0, "2024-01-02T03:04:05.250Z", 1, 7),  # text int converted
        ("ok-3", 1, 3.0, "true", 1704164645, "2.5", None),  # integral real, unix seconds
        ("ok-4", 1, 1, "f", 1704164645123, 0.1, "y"),  # unix milliseconds
        ("bad-blob", 1, 1, 1, None, None, b"\x01\x02"),  # a blob in an untyped text column
        ("bad-qty", 1, "many", 1, None, None, None),  # text in integer column
        ("bad-bool", 1, 1, 2, None, None, None),  # 2 is not a boolean
        ("bad-date", 1, 1, 1, "next tuesday", None, None),
        ("bad-fk", 99, 1, 1, None, None, None),  # foreign key to a missing row
        ("bad-real", 1, 1, 1, None, "cheap", None),
        (None, 1, 1, 1, None, None, None),  # NULL in a text primary key
    ]
    conn.executemany('INSERT INTO "order" VALUES (?, ?, ?, ?, ?, ?, ?)', rows)
    conn.execute("INSERT INTO log VALUES (?, ?)", ("nul\x00byte", None))
    conn.execute("INSERT INTO log VALUES (CAST(? AS TEXT), ?)", (b"\xff\xfebad utf8", None))
    conn.execute("INSERT INTO log VALUES (?, ?)", ("fine", "2024-05-06 07:08:09+03:00"))
    conn.commit()
    conn.close()


def test_the_foreign_key_check_runs_beside_the_snapshot(
    pg_url, run_migration, tmp_path, monkeypatch
):
    """PRAGMA foreign_key_check runs in the snapshot's thread while the parent imports the rest
    of the migration: planning takes its result and never runs it again."""
    source = tmp_path / "weird.sqlite"
    _adversarial(source)

    def again(conn: sqlite3.Connection) -> None:
        raise AssertionError("the planner ran foreign_key_check again")

    monkeypatch.setattr(plan_phase, "foreign_key_violations", again)
    _, report = run_migration(pg_url, {source: "weird"})
    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert tables["order"]["rejects"]["foreign_key_to_missing_row:user"] == 1
    assert report["verified"] is True


def test_every_problem_is_converted_or_rejected_and_counted(pg_url, run_migration, tmp_path):
    """A value no declared type's rule converts widens its column to the narrowest type that
    holds every stored value (issue 17); only what no type holds losslessly is rejected: a
    NULL primary key, a foreign key to a missing row, a NUL byte in a text, invalid UTF-8."""
    source = tmp_path / "weird.sqlite"
    _adversarial(source)

    code, report = run_migration(pg_url, {source: "weird"})
    assert code == 1, "rejects without --allow-rejects must fail the run"
    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert report["verified"] is True, [t["verification_problems"] for t in tables.values()]
    assert tables["order"]["rejects"] == {
        "foreign_key_to_missing_row:user": 1,
        "null_in_primary_key": 1,
    }
    assert tables["log"]["rejects"] == {"nul_byte_in_text": 1, "invalid_utf8": 1}
    for table in tables.values():
        assert table["rows_written"] + sum(table["rejects"].values()) == table["rows_source"]
    columns = {c["source"]: c for c in tables["order"]["columns"]}
    assert {name: c["type"] for name, c in columns.items()} == {
        "code": "text",
        "user_id": "bigint",
        "qty": "text",  # 'many' among the integers
        "paid": "text",  # 2 is no boolean
        "created_at": "text",  # 'next tuesday'
        "price": "text",  # 'cheap'
        "note": "bytea",  # a blob among texts and an integer
    }
    assert columns["qty"]["classes"] == {"integer": 10, "text": 1}
    assert "but 1 of 11 values are not" in columns["paid"]["rule"]

    rejects = [
        json.loads(line) for line in (tmp_path / "work/rejects.jsonl").read_text().splitlines()
    ]
    assert len(rejects) == report["rows_rejected"] == 4
    by_problem = {r["problem"]: r for r in rejects}
    assert by_problem["foreign_key_to_missing_row:user"]["key"] == {"code": "bad-fk"}
    assert by_problem["invalid_utf8"]["key"] == {"rowid": 2}
    assert by_problem["invalid_utf8"]["column"] == "message"

    with psycopg.connect(pg_url, options="-c TimeZone=UTC") as conn:
        rows = conn.execute(
            'SELECT code, qty, paid, created_at, price, note FROM weird."order" ORDER BY code'
        ).fetchall()
        assert rows == [
            ("bad-blob", "1", "1", None, None, b"\x01\x02"),
            ("bad-bool", "1", "2", None, None, None),
            ("bad-date", "1", "1", "next tuesday", None, None),
            ("bad-qty", "many", "1", None, None, None),
            ("bad-real", "1", "1", None, "cheap", None),
            ("ok-1", "5", "1", "2024-01-02 03:04:05", "9.5", b"x"),
            ("ok-2", "42", "0", "2024-01-02T03:04:05.250Z", "1.0", b"7"),
            ("ok-3", "3", "true", "1704164645", "2.5", None),
            ("ok-4", "1", "f", "1704164645123", "0.1", b"y"),
        ]
        assert conn.execute('SELECT "we""ird" FROM weird."user" WHERE id = 1').fetchone() == (
            'q"uote',
        )
        (at,) = conn.execute("SELECT at FROM weird.log").fetchone()
        assert at == datetime(2024, 5, 6, 4, 8, 9, tzinfo=UTC)
        (indexes,) = conn.execute(
            "SELECT count(*) FROM pg_indexes "
            "WHERE schemaname = 'weird' AND indexname = 'order by user'"
        ).fetchone()
        assert indexes == 1
        (new_id,) = conn.execute(
            'INSERT INTO weird."user" ("full name") VALUES (%s) RETURNING id', ("Cy",)
        ).fetchone()
        assert new_id == 3

    code, report = run_migration(pg_url, {source: "weird"}, truncate=True, allow_rejects=True)
    assert code == 0
    assert report["rows_rejected"] == 4


def test_every_stored_form_of_a_declared_type_is_converted(pg_url, run_migration, tmp_path):
    """Where every value converts, the declared type's intent is taken, whatever the forms."""
    source = tmp_path / "forms.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute(
            'CREATE TABLE "order" (code TEXT PRIMARY KEY, qty INTEGER, paid BOOLEAN, '
            "created_at DATETIME, price REAL)"
        )
        conn.executemany(
            'INSERT INTO "order" VALUES (?, ?, ?, ?, ?)',
            [
                ("ok-1", 5, 1, "2024-01-02 03:04:05", 9.5),
                ("ok-2", "42", 0, "2024-01-02T03:04:05.250Z", 1),  # text int converted
                ("ok-3", 3.0, "true", 1704164645, "2.5"),  # integral real, unix seconds
                ("ok-4", 1, "f", 1704164645123, 0.1),  # unix milliseconds
            ],
        )
    conn.close()
    code, report = run_migration(pg_url, {source: "forms"})
    assert code == 0, report
    with psycopg.connect(pg_url, options="-c TimeZone=UTC") as conn:
        rows = conn.execute(
            'SELECT code, qty, paid, created_at, price FROM forms."order" ORDER BY code'
        ).fetchall()
    assert rows == [
        ("ok-1", 5, True, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 9.5),
        ("ok-2", 42, False, datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=UTC), 1.0),
        ("ok-3", 3, True, datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), 2.5),
        ("ok-4", 1, False, datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC), 0.1),
    ]


def test_names_colliding_after_63_bytes_stop_before_any_write(pg_url, run_migration, tmp_path):
    source = tmp_path / "long.sqlite"
    prefix = "t" * 63
    with sqlite3.connect(source) as conn:
        conn.execute(f'CREATE TABLE "{prefix}_one" (a INTEGER)')
        conn.execute(f'CREATE TABLE "{prefix}_two" (a INTEGER)')

    with pytest.raises(MigrationError, match="after truncation to 63 bytes"):
        run_migration(pg_url, {source: "long"})
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regnamespace('long')").fetchone() == (None,)


def test_rerun_refuses_non_empty_target_resume_keeps_finished_tables(
    pg_url, run_migration, tmp_path
):
    source = tmp_path / "small.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO a (v) VALUES (?)", [("x",)] * 10)
        conn.executemany("INSERT INTO b (v) VALUES (?)", [("y",)] * 20)

    assert run_migration(pg_url, {source: "small"})[0] == 0
    with pytest.raises(MigrationError, match="not empty"):
        run_migration(pg_url, {source: "small"})

    # A failure after table a: the state file says a is done, b must be redone.
    state = tmp_path / "work/state.json"
    state.write_text(
        json.dumps({**json.loads(state.read_text()), "tables": {"small.a": "constrained"}})
    )
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO small.a (v) VALUES ('kept by resume')")
    code, report = run_migration(pg_url, {source: "small"}, resume=True)
    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert tables["a"]["resumed"] is True
    assert tables["b"]["resumed"] is False
    assert tables["b"]["verified"] is True
    assert tables["a"]["verified"] is False, "the extra row in a must be caught by verification"
    assert code == 1


def test_dry_run_prints_the_plan_and_writes_nothing(pg_url, run_migration, tmp_path, capsys):
    source = tmp_path / "weird.sqlite"
    _adversarial(source)
    code, _ = run_migration(pg_url, {source: "weird"}, dry_run=True)
    assert code == 0
    out = capsys.readouterr().out
    assert "weird:order -> weird.order" in out
    assert 'paid -> paid text collate "C"\n        stored: integer 9, text 2\n' in out
    assert "why: declared BOOLEAN (boolean), but 1 of 11 values are not; holds 9 integer" in out
    assert 'Full Name -> full name text collate "C"' in out
    assert "problem: foreign_key_to_missing_row:user x1" in out
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT to_regnamespace('weird')").fetchone() == (None,)


def test_rows_an_existing_table_refuses_go_to_the_reject_file(pg_url, run_migration, tmp_path):
    """Existing mode: the target's own CHECK / NOT NULL / length limits refuse single rows;
    the chunk is still copied, each refused row is rejected with PostgreSQL's reason, and
    verification leaves exactly those rows out on the source side."""
    source = tmp_path / "legacy.sqlite"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE flats (id INTEGER PRIMARY KEY, rooms INTEGER, code TEXT)")
        rows = [(i, i % 4, f"f{i}") for i in range(1, 2001)]
        rows[99] = (100, -1, "f100")  # CHECK (rooms >= 0)
        rows[1499] = (1500, 2, "much-too-long-code")  # varchar(8)
        rows[1999] = (2000, 3, None)  # NOT NULL
        conn.executemany("INSERT INTO flats VALUES (?, ?, ?)", rows)
    conn.close()
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("CREATE SCHEMA legacy")
        pg.execute(
            "CREATE TABLE legacy.flats (id bigint PRIMARY KEY, "
            "rooms integer CONSTRAINT flats_rooms_check CHECK (rooms >= 0), "
            "code varchar(8) NOT NULL)"
        )

    code, report = run_migration(pg_url, {source: "legacy"}, mode="existing", chunk_rows=1000)

    (table,) = report["sources"][0]["tables"]
    assert code == 1, "rejects without --allow-rejects fail the run"
    assert table["rows_written"] == 1997
    assert table["rejects"] == {
        "check_violation:flats_rooms_check": 1,
        "string_data_right_truncation": 1,
        "null_in_not_null_column": 1,  # caught by the rules before PostgreSQL
    }
    assert table["verified"] is True, table["verification_problems"]
    lines = (tmp_path / "work/rejects.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["key"]["id"] for r in records) == [100, 1500, 2000]
    assert sum(1 for r in records if r.get("detail")) == 2  # PostgreSQL's own reasons
    with psycopg.connect(pg_url) as pg:
        assert pg.execute("SELECT count(*) FROM legacy.flats").fetchone() == (1997,)
        assert pg.execute(
            "SELECT count(*) FROM legacy.flats WHERE id IN (100, 1500, 2000)"
        ).fetchone() == (0,)

    # Verified again on its own later, the refused rows (kept in the reject file with their
    # rowids) stay out of the source side; a row lost since is still caught.
    options = Options(
        sources=[Source("legacy", source, "legacy")],
        target_url=pg_url,
        mode="existing",
        work_dir=tmp_path / "verify",
        rejects_path=tmp_path / "work/rejects.jsonl",
        allow_rejects=True,
        progress=False,
    )
    code, again = verify_only(options)
    assert code == 0, again["sources"][0]["tables"][0]["verification_problems"]
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("DELETE FROM legacy.flats WHERE id = 7")
    code, again = verify_only(options)
    assert code == 1
    assert (
        "row count differs: sqlite 1997, postgres 1996"
        in (again["sources"][0]["tables"][0]["verification_problems"])
    )

    # A resumed run keeps the refusals of the tables the earlier run finished.
    with psycopg.connect(pg_url, autocommit=True) as pg:
        pg.execute("INSERT INTO legacy.flats VALUES (7, 3, 'f7')")
    code, resumed = run_migration(
        pg_url, {source: "legacy"}, mode="existing", resume=True, allow_rejects=True
    )
    (table,) = resumed["sources"][0]["tables"]
    assert (code, table["resumed"], table["verified"]) == (0, True, True)

    code, _ = run_migration(
        pg_url, {source: "legacy"}, mode="existing", truncate=True, allow_rejects=True
    )
    assert code == 0


def test_keys_that_sort_otherwise_once_converted_are_still_verified(
    pg_url, run_migration, tmp_path
):
    """SQLite sorts numbers before texts and DATETIME texts as texts; PostgreSQL sorts the
    converted values: text bytewise, instants in time. Tables not keyed by their integer rowid
    are hashed as a multiset, which no order can change."""
    source = tmp_path / "keys.sqlite"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE codes (code PRIMARY KEY, v TEXT) WITHOUT ROWID;
            INSERT INTO codes VALUES (2, 'a'), ('10', 'b'), (3.5, 'c'), ('abc', 'd');
            CREATE TABLE days (at DATETIME PRIMARY KEY, v INTEGER);
            INSERT INTO days VALUES ('2024-01-01 10:00:00+03:00', 1), ('2024-01-01 08:00:00', 2);
            """
        )
    conn.close()

    code, report = run_migration(pg_url, {source: "keys"})

    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert code == 0, report
    assert {name: t["verified"] for name, t in tables.items()} == {"codes": True, "days": True}
    assert {t["hash_mode"] for t in tables.values()} == {"multiset"}
    with psycopg.connect(pg_url) as conn:
        codes = conn.execute('SELECT code FROM keys.codes ORDER BY code COLLATE "C"').fetchall()
    assert codes == [("10",), ("2",), ("3.5",), ("abc",)]


def test_keys_unique_in_sqlite_but_not_once_converted_keep_every_row(
    pg_url, run_migration, tmp_path
):
    """1 and '1' in an untyped column both become the text '1'; two spellings of one instant
    become one timestamptz. Every row arrives and is verified; each such key is reported (exit
    1) with a plain index in its place, and a foreign key to it is reported, not added."""
    source = tmp_path / "twins.sqlite"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE events (id INTEGER PRIMARY KEY, at DATETIME UNIQUE, code UNIQUE);
            INSERT INTO events VALUES
                (1, '2024-01-01 10:00:00', 1), (2, '2024-01-01T10:00:00Z', '1'),
                (3, '2024-01-02 10:00:00', 2);
            CREATE TABLE tickets (id INTEGER PRIMARY KEY, event_code REFERENCES events(code));
            INSERT INTO tickets VALUES (1, 1), (2, '1'), (3, 2);
            CREATE TABLE pairs (a, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
            INSERT INTO pairs VALUES (1, 'x'), ('1', 'x'), (2, 'x');
            """
        )
    conn.close()

    code, report = run_migration(pg_url, {source: "twins"})

    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert code == 1
    assert report["verified"] is True
    assert {name: t["rows_written"] for name, t in tables.items()} == {
        "events": 3,
        "tickets": 3,
        "pairs": 3,
    }
    assert sorted(tables["events"]["constraint_problems"]) == [
        "events_at_key not added: Key (at)=(2024-01-01 10:00:00+00) is duplicated in "
        "PostgreSQL, though unique in SQLite; a plain index stands in for it",
        "events_code_key not added: Key (code)=(1) is duplicated in PostgreSQL, though unique "
        "in SQLite; a plain index stands in for it",
    ]
    assert tables["pairs"]["constraint_problems"] == [
        "pairs_pkey not added: Key (a, b)=(1, x) is duplicated in PostgreSQL, though unique in "
        "SQLite; a plain index stands in for it"
    ]
    [problem] = tables["tickets"]["constraint_problems"]
    assert problem.startswith("foreign key not added, its parent key is not unique")
    with psycopg.connect(pg_url) as conn:
        indexes = conn.execute(
            "SELECT indexname, indexdef LIKE 'CREATE UNIQUE%' FROM pg_indexes "
            "WHERE schemaname = 'twins' ORDER BY indexname"
        ).fetchall()
    assert indexes == [
        ("events_at_key", False),
        ("events_code_key", False),
        ("events_pkey", True),
        ("pairs_pkey", False),
        ("tickets_pkey", True),
    ]
    assert _constraints(pg_url, "twins", "f") == []


def test_what_is_not_carried_over_is_named_and_fails_the_run(
    pg_url, run_migration, tmp_path, capsys
):
    """Views, triggers, generated columns, expression indexes and collations hold SQLite's SQL,
    which is not translated: each is named in the dry run and the report, and the run exits 1."""
    source = tmp_path / "extras.sqlite"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, n INTEGER,
                                twice INTEGER GENERATED ALWAYS AS (n * 2) VIRTUAL);
            CREATE UNIQUE INDEX users_email ON users (lower(email));
            INSERT INTO users (email, n) VALUES ('a@x', 1), ('b@x', 2);
            CREATE VIEW admins AS SELECT * FROM users WHERE n > 1;
            CREATE TRIGGER touch AFTER INSERT ON users BEGIN SELECT 1; END;
            CREATE TABLE orders (
                id INTEGER PRIMARY KEY, note TEXT DEFAULT 'check (no)', "check (" TEXT,
                amount REAL CHECK (amount > 0), status TEXT COLLATE NOCASE,
                CONSTRAINT positive CHECK (id > 0)
            );
            INSERT INTO orders (amount, status) VALUES (5, 'new');
            """
        )
    conn.close()

    assert run_migration(pg_url, {source: "extras"}, dry_run=True)[0] == 0
    out = capsys.readouterr().out
    assert "extras: not migrated: trigger touch, view admins\n" in out
    assert "problem: expression_index_not_migrated:users_email x1" in out
    code, report = run_migration(pg_url, {source: "extras"})

    assert code == 1
    [summary] = report["sources"]
    assert summary["not_migrated"] == ["trigger touch", "view admins"]
    tables = {t["table"]: t for t in summary["tables"]}
    assert [t["verified"] for t in tables.values()] == [True, True]
    assert tables["users"]["rows_written"] == 2
    assert tables["users"]["problems"] == {
        "expression_index_not_migrated:users_email": 1,
        "generated_column_not_migrated:twice": 1,
    }
    assert tables["orders"]["problems"] == {"collation_not_migrated:NOCASE": 1}


def test_a_column_named_rowid_and_a_descending_integer_key_are_not_the_rowid(
    pg_url, run_migration, tmp_path
):
    """`SELECT rowid` reads a column named rowid: the copy reads the rowid by a name no column
    takes (_rowid_, oid). INTEGER PRIMARY KEY DESC is not an alias of the rowid."""
    source = tmp_path / "names.sqlite"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE tokens (rowid TEXT, n INTEGER);
            CREATE TABLE ranked (id INTEGER PRIMARY KEY DESC, v TEXT);
            INSERT INTO ranked VALUES (10, 'x'), (20, 'y'), (5, 'z');
            """
        )
        conn.executemany("INSERT INTO tokens VALUES (?, ?)", [(f"t{i}", i) for i in range(3000)])
    conn.close()

    code, report = run_migration(pg_url, {source: "names"}, chunk_rows=1000)

    assert code == 0, report
    tables = {t["table"]: t for t in report["sources"][0]["tables"]}
    assert {name: t["verified"] for name, t in tables.items()} == {"ranked": True, "tokens": True}
    assert tables["ranked"]["hash_mode"] == "multiset"
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(DISTINCT rowid) FROM names.tokens").fetchone() == (3000,)
        assert conn.execute("SELECT id FROM names.ranked ORDER BY v").fetchall() == [
            (10,),
            (20,),
            (5,),
        ]

    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE hidden (rowid TEXT, _rowid_ TEXT, oid TEXT)")
    conn.close()
    with pytest.raises(MigrationError, match="columns named rowid, _rowid_ and oid"):
        run_migration(pg_url, {source: "other"})


@pytest.mark.parametrize("keep_case", [False, True])
def test_a_reference_in_another_case_finds_its_parent(pg_url, run_migration, tmp_path, keep_case):
    """SQLite matches REFERENCES USERS(ID) to users(id); the foreign key names the parent as
    its CREATE TABLE does, whether names keep their case or not."""
    source = tmp_path / "refs.sqlite"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE Users (Id INTEGER PRIMARY KEY);
            CREATE TABLE visits (id INTEGER PRIMARY KEY, who INTEGER REFERENCES USERS(ID));
            INSERT INTO Users VALUES (1); INSERT INTO visits VALUES (1, 1);
            """
        )
    conn.close()

    code, report = run_migration(pg_url, {source: "refs"}, keep_case=keep_case)

    assert code == 0, report
    parent = 'refs."Users"("Id")' if keep_case else "refs.users(id)"
    assert _constraints(pg_url, "refs", "f") == [
        ("visits_who_fkey", f"FOREIGN KEY (who) REFERENCES {parent}")
    ]


def test_a_check_postgresql_takes_is_carried_over_and_one_it_refuses_is_named(
    pg_url, run_migration, tmp_path
):
    """CHECK expressions go to PostgreSQL as written, their quoted names folded like the
    columns; PostgreSQL validates every copied row. One it cannot take (SQLite's typeof()) is
    named with PostgreSQL's reason (exit 1); checks a column's type makes itself (JSON_VALID on
    json, IN (0, 1) on boolean) are left to the type."""
    source = tmp_path / "checks.sqlite"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            """
            CREATE TABLE Orders (
                Id INTEGER PRIMARY KEY, note TEXT DEFAULT 'check (no)', "check (" TEXT,
                Amount REAL CHECK (Amount > 0), status TEXT CHECK ("Status" IN ('new', 'paid')),
                n INT CHECK (typeof(n) = 'integer'), flag BOOLEAN CHECK (flag IN (0, 1)),
                data JSON CHECK ((JSON_VALID("data") OR "data" IS NULL)),
                CONSTRAINT positive CHECK ([Id] > 0)
            );
            INSERT INTO Orders (Amount, status, n, flag, data) VALUES (5, 'new', 1, 1, '{}');
            """
        )
    conn.close()

    code, report = run_migration(pg_url, {source: "checks"})

    assert code == 1
    [table] = report["sources"][0]["tables"]
    assert table["verified"] is True
    [problem] = table["constraint_problems"]
    assert problem.startswith("orders_3_check not added (function typeof(bigint) does not exist)")
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO checks.orders (amount, status) VALUES (-1, 'new')")
    assert _constraints(pg_url, "checks", "c") == [
        ("orders_1_check", "CHECK ((amount > (0)::double precision))"),
        ("orders_2_check", "CHECK ((status = ANY (ARRAY['new'::text, 'paid'::text])))"),
        ("orders_6_check", "CHECK ((id > 0))"),
    ]
