"""PostgreSQL names of SQLite names (plan.fold_case)."""

from __future__ import annotations

from runtime.migrate.plan import fold_case


def test_ascii_letters_fold_as_postgresql_folds_unquoted_names() -> None:
    assert fold_case("InstaWaves_Users") == "instawaves_users"
    assert fold_case("Full Name") == "full name"


def test_other_letters_keep_their_case_as_both_databases_do() -> None:
    # SQLite holds "Ärger" and "ärger" apart: so must PostgreSQL.
    assert fold_case("Ärger") == "Ärger"
    assert fold_case("ÄRGER") != fold_case("äRGER")
