"""Split long messages into parts Telegram accepts (4096 characters each).

Lengths are counted in UTF-16 code units, which is how Telegram measures text (an emoji outside
the BMP counts twice), so a part that fits here fits there. Parts break at the best boundary that
fits: a blank line, then a line end, then a space, then anywhere. With parse_mode=HTML the raw
markup is measured (never less than the visible text), entities such as `&amp;` and tags are never
cut, and tags open at a break are closed at the end of the part and reopened at the start of the
next, so every part is valid HTML on its own (unless the open tags alone would not fit a part, in
which case they are not reopened).

A text that cannot be split (with parse_mode=HTML, one tag or entity longer than a part) raises
`TextNotSplittable`: botapi's /send refuses such a text, and notifymonitor dead-letters a row
that has one. This module is the one home of that rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.errors import DomosError

TELEGRAM_TEXT_LIMIT = 4096
#: How much of an unsplittable token the error quotes.
_QUOTE_CHARS = 60


class TextNotSplittable(DomosError, ValueError):
    """One token of the text (an HTML tag or entity) is longer than a part may be."""

    def __init__(self, token: str, size: int, limit: int) -> None:
        quoted = token if len(token) <= _QUOTE_CHARS else token[:_QUOTE_CHARS] + "…"
        super().__init__(
            f"cannot split the text into parts of {limit} characters: one tag or entity"
            f" of {size} characters is longer than one part ({quoted!r})"
        )
        self.size = size
        self.limit = limit


_HTML_TOKEN = re.compile(r"<[^<>]*>|&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]*);|[\s\S]")
_TAG_NAME = re.compile(r"</?\s*([a-zA-Z][a-zA-Z0-9-]*)")
# Telegram rejects a part that has markup but no text; whitespace-only parts are dropped as well.
_BOUNDARY_RANK = {"\n": 2, " ": 1}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class _Token:
    raw: str
    size: int
    #: For tags: the tag name, and whether it opens or closes; None for text and entities.
    tag: str | None = None
    closing: bool = False


def _tokenize(text: str, html: bool) -> list[_Token]:
    if not html:
        return [_Token(ch, utf16_len(ch)) for ch in text]
    tokens = []
    for match in _HTML_TOKEN.finditer(text):
        raw = match.group(0)
        if raw.startswith("<") and len(raw) > 1:
            name = _TAG_NAME.match(raw)
            self_closing = raw.endswith("/>")
            if name is not None and not self_closing:
                tokens.append(
                    _Token(raw, utf16_len(raw), name.group(1).lower(), raw.startswith("</"))
                )
                continue
        tokens.append(_Token(raw, utf16_len(raw)))
    return tokens


def _closing_size(stack: list[_Token]) -> int:
    return sum(len(token.tag or "") + 3 for token in stack)


def _apply(stack: list[_Token], token: _Token) -> list[_Token]:
    if token.tag is None:
        return stack
    if not token.closing:
        return [*stack, token]
    # Close the innermost matching tag; Telegram's HTML has no implicit closes to mimic.
    for index in range(len(stack) - 1, -1, -1):
        if stack[index].tag == token.tag:
            return stack[:index] + stack[index + 1 :]
    return stack


def _render(tokens: list[_Token], reopen: list[_Token], close: list[_Token]) -> str:
    body = "".join(token.raw for token in tokens)
    opening = "".join(token.raw for token in reopen)
    closing = "".join(f"</{token.tag}>" for token in reversed(close))
    return opening + body + closing


def _visible(tokens: list[_Token]) -> bool:
    return any(token.tag is None and not token.raw.isspace() for token in tokens)


def _choose(
    best: dict[int, tuple[int, int, list[_Token]]], start: int, reach: int
) -> tuple[int, int, list[_Token]]:
    """The strongest boundary that keeps the part at least half as long as it could be."""
    half = start + (reach - start) // 2
    for rank in sorted(best, reverse=True):
        if best[rank][0] >= half:
            return best[rank]
    return best[0]


def split_message(
    text: str, *, limit: int = TELEGRAM_TEXT_LIMIT, parse_mode: str | None = None
) -> list[str]:
    """Parts of `text`, each at most `limit` UTF-16 units, in order; [] for blank text.

    Raises TextNotSplittable when one tag or entity alone is longer than `limit`."""
    html = (parse_mode or "").upper() == "HTML"
    if not text.strip():
        return []
    if utf16_len(text) <= limit:
        return [text]
    tokens = _tokenize(text, html)
    parts: list[str] = []
    start = 0
    carried: list[_Token] = []
    while start < len(tokens):
        reopen_size = sum(token.size for token in carried)
        stack = list(carried)
        size = reopen_size
        # best[rank] = (end index of the part, index where the next part starts, stack at end)
        best: dict[int, tuple[int, int, list[_Token]]] = {}
        index = start
        while index < len(tokens):
            token = tokens[index]
            # Breaking before this token is possible: everything up to here was checked to fit.
            if index > start:
                best[0] = (index, index, stack)
                if token.raw in _BOUNDARY_RANK:
                    best[_BOUNDARY_RANK[token.raw]] = (index, index + 1, stack)
                    if token.raw == "\n" and tokens[index - 1].raw == "\n":
                        best[3] = (index - 1, index + 1, stack)
            new_stack = _apply(stack, token)
            if size + token.size + _closing_size(new_stack) > limit:
                break
            stack = new_stack
            size += token.size
            index += 1
        if index == len(tokens):
            chunk = tokens[start:]
            if _visible(chunk):
                parts.append(_render(chunk, carried, stack))
            break
        if not best:
            if carried:
                # The tags to reopen leave no room for text (absurdly deep unclosed markup):
                # give up reopening them rather than failing the whole message.
                carried = []
                continue
            raise TextNotSplittable(tokens[start].raw, tokens[start].size, limit)
        end, next_start, end_stack = _choose(best, start, index)
        chunk = tokens[start:end]
        if _visible(chunk):
            parts.append(_render(chunk, carried, end_stack))
        carried = end_stack
        start = next_start
    return parts
