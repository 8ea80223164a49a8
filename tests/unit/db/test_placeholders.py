"""The `?` -> `%s` tokenizer: table tests for the tricky cases, properties with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.db.placeholders import count_placeholders, to_pyformat, tokenize
from runtime.errors import QueryError

CASES = [
    ("SELECT ?", "SELECT %s"),
    ("SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = %s AND b = %s"),
    ("SELECT 'it''s ?' , ?", "SELECT 'it''s ?' , %s"),
    ("SELECT E'it\\'s ?', ?", "SELECT E'it\\'s ?', %s"),
    ("SELECT e'\\\\', ?", "SELECT e'\\\\', %s"),
    # standard_conforming_strings: a backslash does not escape in a plain literal.
    ("SELECT 'C:\\', ?", "SELECT 'C:\\', %s"),
    ('SELECT "a?b", ? FROM "we""ird?"', 'SELECT "a?b", %s FROM "we""ird?"'),
    ("SELECT ? -- what? \n, ?", "SELECT %s -- what? \n, %s"),
    ("SELECT /* a ? /* nested ? */ still ? */ ?", "SELECT /* a ? /* nested ? */ still ? */ %s"),
    ("SELECT $$ ? $$, ?", "SELECT $$ ? $$, %s"),
    ("SELECT $fn$ it's ? $x$ $fn$, ?", "SELECT $fn$ it's ? $x$ $fn$, %s"),
    ("SELECT $1, ?", "SELECT $1, %s"),
    ("SELECT a$b, ?", "SELECT a$b, %s"),
    ("SELECT data ?? 'key', ?", "SELECT data ? 'key', %s"),
    ("SELECT data ??| array['a'], data ??& ?", "SELECT data ?| array['a'], data ?& %s"),
    ("SELECT ? || 'x'", "SELECT %s || 'x'"),
    ("SELECT 10 % ?, '5%'", "SELECT 10 %% %s, '5%%'"),
    ("SELECT 1", "SELECT 1"),
    ("SELECT U&'d\\0061t?', ?", "SELECT U&'d\\0061t?', %s"),
]


@pytest.mark.parametrize(("sql", "expected"), CASES)
def test_rewrites(sql: str, expected: str) -> None:
    assert to_pyformat(sql) == expected


@pytest.mark.parametrize(
    "sql", ["SELECT 'open", 'SELECT "open', "SELECT /* open /* */", "SELECT $$ open", "E'\\'"]
)
def test_unterminated_text_is_an_error(sql: str) -> None:
    with pytest.raises(QueryError, match="unterminated"):
        tokenize(sql)


# --- properties ---

_code = st.text(alphabet=st.sampled_from(list("abcxyz_ ,()=<>+*1290\n.")), min_size=0, max_size=8)
_plain_body = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_string = _plain_body.map(lambda s: "'" + s.replace("'", "''") + "'")
_escape_string = _plain_body.map(lambda s: "E'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'")
_ident = _plain_body.map(lambda s: '"' + s.replace('"', '""') + '"')
_line_comment = _plain_body.map(lambda s: "--" + s.replace("\n", " ") + "\n")
# Spaces inside the delimiters: a body ending in "/" would otherwise open a nested comment with
# the closing "*/" (PostgreSQL nests block comments, so that text really is unterminated).
_block_comment = _plain_body.map(
    lambda s: "/* " + s.replace("*/", "* /").replace("/*", "/ *") + " */"
)
_dollar = st.tuples(st.sampled_from(["", "fn", "body_1"]), _plain_body).map(
    lambda t: f"${t[0]}$" + t[1].replace("$", "") + f"${t[0]}$"
)
_quoted = st.one_of(_string, _escape_string, _ident, _line_comment, _block_comment, _dollar)
_piece = st.one_of(
    _code.map(lambda s: ("code", s)),
    _quoted.map(lambda s: ("quoted", s)),
    st.just(("placeholder", "?")),
    st.sampled_from(["??", "??|", "??&"]).map(lambda s: ("operator", s)),
)


def _separated(pieces: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # A space between pieces keeps neighbours from merging into one token (`E` + `'..'`, `$1`).
    out: list[tuple[str, str]] = []
    for piece in pieces:
        out.extend([("code", " "), piece])
    return out


@given(st.lists(_piece, max_size=12).map(_separated))
def test_placeholders_rewritten_and_quoted_text_kept(pieces: list[tuple[str, str]]) -> None:
    sql = "".join(text for _, text in pieces)
    expected = "".join(
        "%s"
        if kind == "placeholder"
        else text[1:]
        if kind == "operator"
        else text.replace("%", "%%")
        for kind, text in pieces
    )
    assert to_pyformat(sql) == expected
    assert count_placeholders(sql) == sum(1 for kind, _ in pieces if kind == "placeholder")
    # The E of E'..' stays with the code before it; the literal itself is one token.
    quoted = [text.removeprefix("E") for kind, text in pieces if kind == "quoted"]
    assert [t.text for t in tokenize(sql) if t.kind in ("quoted", "comment")] == quoted


@given(st.lists(_piece, max_size=12).map(_separated))
def test_round_trip(pieces: list[tuple[str, str]]) -> None:
    """Tokens concatenate back to the input, and rendering is reversible token by token."""
    sql = "".join(text for _, text in pieces)
    tokens = tokenize(sql)
    assert "".join(t.text for t in tokens) == sql
    rendered = to_pyformat(sql)
    undone = "".join(
        {"placeholder": "?", "escaped_qmark": "??"}.get(t.kind, t.text) for t in tokens
    )
    assert undone == sql
    placeholders = sum(1 for t in tokens if t.kind == "placeholder")
    assert rendered.replace("%%", "").count("%s") == placeholders


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_text_either_tokenizes_losslessly_or_is_rejected(sql: str) -> None:
    try:
        tokens = tokenize(sql)
    except QueryError:
        return
    assert "".join(t.text for t in tokens) == sql
