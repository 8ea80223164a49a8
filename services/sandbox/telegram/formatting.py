"""parse_mode=HTML: the plain text and entities Telegram returns, or its "can't parse" error.

Offsets and lengths are in UTF-16 code units, as in the Bot API. MarkdownV2/Markdown texts are
returned as sent (their entities are not computed); only the parse_mode value is validated.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from services.sandbox.telegram.errors import bad_request

PARSE_MODES = ("html", "markdown", "markdownv2")
_TAG_ENTITIES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class _EntityParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.plain: list[str] = []
        self.position = 0
        self.open: list[tuple[str, int, dict[str, str | None]]] = []
        self.entities: list[dict[str, Any]] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.error:
            return
        if tag not in _TAG_ENTITIES:
            self.error = f'Unsupported start tag "{tag}"'
            return
        self.open.append((tag, self.position, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if self.error:
            return
        if not self.open or self.open[-1][0] != tag:
            self.error = f'Unmatched end tag "{tag}"'
            return
        _, start, attrs = self.open.pop()
        length = self.position - start
        if length == 0:
            return
        entity: dict[str, Any] = {"type": _TAG_ENTITIES[tag], "offset": start, "length": length}
        if tag == "a":
            entity["url"] = attrs.get("href") or ""
        if tag == "pre" and attrs.get("language"):
            entity["language"] = attrs["language"]
        if tag == "tg-emoji":
            entity["custom_emoji_id"] = attrs.get("emoji-id") or ""
        self.entities.append(entity)

    def handle_data(self, data: str) -> None:
        self.plain.append(data)
        self.position += utf16_len(data)


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    parser = _EntityParser()
    parser.feed(text)
    parser.close()
    if parser.error is None and parser.open:
        parser.error = f'Can\'t find end tag corresponding to start tag "{parser.open[-1][0]}"'
    if parser.error is not None:
        raise bad_request(f"can't parse entities: {parser.error}")
    parser.entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(parser.plain), parser.entities


def format_text(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    if parse_mode is None:
        return text, []
    mode = parse_mode.lower()
    if mode not in PARSE_MODES:
        raise bad_request(f"unsupported parse_mode {parse_mode}")
    if mode == "html":
        return parse_html(text)
    return text, []
