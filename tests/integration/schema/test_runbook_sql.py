"""Every SQL statement the runbooks and the cut-over runbook give to psql runs on the schema.

An operator confirms an alert by pasting the runbook's `psql -c "..."`: a column renamed by a
later migration would fail them at the moment they need it. The statements run, as written, on a
database `domos db upgrade` made, in a transaction rolled back afterwards.
"""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = sorted([*(ROOT / "docs/runbooks").glob("*.md"), ROOT / "docs/cutover.md"])
_PSQL = re.compile(r"psql [^`\n]*")
#: The placeholder pid a runbook tells the operator to replace.
_EXAMPLE_PID = "12345"


def psql_statements() -> list[tuple[str, str]]:
    """(document, SQL) for each `psql ... -c SQL` in the documents."""
    found = []
    for path in DOCUMENTS:
        for command in _PSQL.findall(path.read_text()):
            words = shlex.split(command)
            for flag, value in itertools.pairwise(words):
                if flag in ("-c", "--command"):
                    found.append((path.name, value))
    return found


def test_the_documents_give_psql_statements() -> None:
    assert len(psql_statements()) >= 10


@pytest.mark.parametrize(("document", "sql"), psql_statements())
def test_each_statement_runs_on_the_schema(migrated_pg_url: str, document: str, sql: str) -> None:
    with psycopg.connect(migrated_pg_url) as conn:
        if _EXAMPLE_PID in sql:  # no such backend: PostgreSQL answers a warning and false
            sql = sql.replace(_EXAMPLE_PID, "2147483647")
        conn.execute(sql)
        conn.rollback()
