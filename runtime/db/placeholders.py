"""Rewrite `?` placeholders to psycopg's `%s` with a real SQL tokenizer.

domos writes SQL once with `?` placeholders (what sqlite3 takes). For PostgreSQL every `?` that is
a placeholder becomes `%s` and every `%` becomes `%%` (psycopg reads `%` as the start of a
placeholder anywhere in the statement, even inside literals). Left exactly as they are:

- string literals `'it''s ?'` (standard_conforming_strings=on: a backslash is an ordinary
  character), escape strings `E'..\\'..'` (backslash escapes), `U&'..'`, `B'..'`, `X'..'`;
- quoted identifiers `"a?b"` (with `""` inside);
- `-- line comments` and `/* block comments /* which nest */ in PostgreSQL */`;
- dollar-quoted bodies `$$ .. $$` and `$tag$ .. $tag$`;
- the JSONB operators `?`, `?|`, `?&`: write them as `??`, `??|`, `??&`. `??` is the one escape for
  a literal question mark outside literals; a single `?` is always a placeholder, so that
  `? || 'x'` (a parameter concatenated to a string) keeps meaning what it says. `??` only has a
  meaning on PostgreSQL: SQLite has no `?` operator, and its SQL is passed through unchanged.

Unterminated literals, identifiers, comments or dollar bodies raise `QueryError` before anything
is sent. Results are cached (`functools.lru_cache`): the SQL text of a program is a small set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from runtime.errors import QueryError

TokenKind = Literal["code", "quoted", "comment", "placeholder", "escaped_qmark"]

# A dollar-quote tag: `$` + optional identifier (no digit first: `$1` is a parameter) + `$`.
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$")
# Characters that start something the scanner must look at; everything else is plain code.
_SPECIAL = re.compile(r"""['"?$%]|--|/\*""")
_IDENT_CHAR = re.compile(r"[A-Za-z_0-9\x80-\U0010ffff]")


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str


def _is_escape_string_prefix(sql: str, quote_at: int) -> bool:
    """True when the quote at `quote_at` opens an E'...' literal (E not part of a longer word)."""
    if quote_at == 0 or sql[quote_at - 1] not in "eE":
        return False
    return quote_at == 1 or not _IDENT_CHAR.match(sql[quote_at - 2])


def _end_of_string(sql: str, start: int, backslash_escapes: bool) -> int:
    """Index just past the literal that opens at `start` (a quote character)."""
    quote = sql[start]
    i = start + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if backslash_escapes and ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:  # doubled quote inside the literal
                i += 2
                continue
            return i + 1
        i += 1
    what = "quoted identifier" if quote == '"' else "string literal"
    raise QueryError(f"unterminated {what} starting at offset {start}")


def _end_of_block_comment(sql: str, start: int) -> int:
    depth = 0
    i = start
    n = len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise QueryError(f"unterminated block comment starting at offset {start}")


def tokenize(sql: str) -> list[Token]:
    """Split `sql` into code, quoted text, comments, placeholders and escaped `??`."""
    tokens: list[Token] = []
    code_start = 0
    i = 0
    n = len(sql)

    def flush(upto: int) -> None:
        if upto > code_start:
            tokens.append(Token("code", sql[code_start:upto]))

    while True:
        match = _SPECIAL.search(sql, i)
        if match is None:
            break
        i = match.start()
        ch = sql[i]
        end: int
        kind: TokenKind
        if ch == "'":
            escape = _is_escape_string_prefix(sql, i)
            end, kind = _end_of_string(sql, i, backslash_escapes=escape), "quoted"
        elif ch == '"':
            end, kind = _end_of_string(sql, i, backslash_escapes=False), "quoted"
        elif ch == "?":
            if sql.startswith("??", i):
                end, kind = i + 2, "escaped_qmark"
            else:
                end, kind = i + 1, "placeholder"
        elif ch == "$":
            tag = _DOLLAR_TAG.match(sql, i)
            # `a$b$` is an identifier containing dollars, not the start of a body.
            if tag is None or (i > 0 and _IDENT_CHAR.match(sql[i - 1])):
                i += 1
                continue
            close = sql.find(tag.group(), tag.end())
            if close < 0:
                raise QueryError(f"unterminated dollar-quoted body starting at offset {i}")
            end, kind = close + len(tag.group()), "quoted"
        elif ch == "%":
            i += 1  # plain code; doubled when rendered
            continue
        elif ch == "-":
            newline = sql.find("\n", i)
            end, kind = (n if newline < 0 else newline + 1), "comment"
        else:  # "/*"
            end, kind = _end_of_block_comment(sql, i), "comment"
        flush(i)
        tokens.append(Token(kind, sql[i:end]))
        i = code_start = end
    flush(n)
    return tokens


_RENDERED: dict[TokenKind, str] = {"placeholder": "%s", "escaped_qmark": "?"}


@lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """`?` placeholders -> `%s`, `??` -> `?`, `%` -> `%%`; quoted text and comments kept."""
    if "?" not in sql and "%" not in sql:
        return sql
    parts = []
    for token in tokenize(sql):
        rendered = _RENDERED.get(token.kind)
        parts.append(rendered if rendered is not None else token.text.replace("%", "%%"))
    return "".join(parts)


def count_placeholders(sql: str) -> int:
    return sum(1 for token in tokenize(sql) if token.kind == "placeholder")
