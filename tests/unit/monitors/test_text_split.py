from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitors.decisions.text_split import TELEGRAM_TEXT_LIMIT, split_message, utf16_len


def test_short_text_is_one_part():
    assert split_message("привет") == ["привет"]


def test_blank_text_has_no_parts():
    assert split_message("  \n ") == []


def test_exact_limit_is_one_part():
    text = "a" * TELEGRAM_TEXT_LIMIT
    assert split_message(text) == [text]


def test_prefers_paragraph_breaks():
    first = "Первый абзац. " * 200
    second = "Второй абзац. " * 200
    parts = split_message(first.strip() + "\n\n" + second.strip())
    assert parts == [first.strip(), second.strip()]


def test_falls_back_to_line_then_word_boundaries():
    lines = "\n".join(f"строка {i} " + "слово " * 10 for i in range(200))
    parts = split_message(lines)
    assert len(parts) > 1
    assert all(utf16_len(part) <= TELEGRAM_TEXT_LIMIT for part in parts)
    assert all(part.startswith("строка") for part in parts)
    words = "слово " * 2000
    for part in split_message(words):
        assert not part.startswith("лово")
        assert part.split()[-1] == "слово"


def test_a_word_longer_than_the_limit_is_cut():
    parts = split_message("x" * 10000, limit=4096)
    assert [len(part) for part in parts] == [4096, 4096, 1808]


def test_length_counts_utf16_units():
    emoji = "😀" * 3000  # 6000 UTF-16 units
    parts = split_message(emoji)
    assert "".join(parts) == emoji
    assert [utf16_len(part) for part in parts] == [4096, 1904]


def test_html_entities_are_never_cut():
    text = "&amp;" * 1000
    parts = split_message(text, limit=103, parse_mode="HTML")
    assert all(re.fullmatch(r"(&amp;)+", part) for part in parts)
    assert "".join(parts) == text


def test_html_tags_are_closed_and_reopened_across_parts():
    text = "<b>" + "жирный текст " * 50 + "</b> и обычный"
    parts = split_message(text, limit=200, parse_mode="HTML")
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 200
        assert part.count("<b>") == part.count("</b>")
    assert parts[0].startswith("<b>")
    assert parts[0].endswith("</b>")
    assert parts[1].startswith("<b>")
    assert parts[-1].endswith("и обычный")


def test_nested_tags_and_links_are_balanced():
    text = '<a href="https://example.com/x">' + "<i>ссылка </i>" * 40 + "</a>"
    parts = split_message(text, limit=150, parse_mode="HTML")
    for part in parts:
        assert len(part) <= 150
        assert part.startswith('<a href="https://example.com/x">')
        assert part.endswith("</a>")
        assert part.count("<i>") == part.count("</i>")


def test_plain_mode_does_not_treat_angle_brackets_as_tags():
    text = "<b>" * 2000
    parts = split_message(text, limit=4096)
    assert "".join(parts) == text


def _visible(html: str) -> str:
    return re.sub(r"<[^>]*>", "", html)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="абв xyz\n😀", min_size=1, max_size=30),
            st.sampled_from(["<b>", "</b>", "<i>", "</i>", "&lt;", "&amp;"]),
        ),
        max_size=60,
    ),
    st.integers(min_value=40, max_value=120),
)
def test_parts_always_fit_and_keep_every_visible_word(pieces, limit):
    text = "".join(pieces)
    parts = split_message(text, limit=limit, parse_mode="HTML")
    assert all(utf16_len(part) <= limit for part in parts)
    original_words = _visible(text).split()
    # Cuts fall on boundaries, so joining the visible words (a hard cut may split one) keeps order.
    joined = "".join("".join(_visible(part).split()) for part in parts)
    assert joined == "".join(original_words)


@pytest.mark.parametrize("parse_mode", [None, "HTML"])
def test_every_part_fits_on_realistic_text(parse_mode):
    text = ("Ежемесячный отчёт сообщества:\n" + "• пункт списка с деталями\n" * 400) * 2
    parts = split_message(text, parse_mode=parse_mode)
    assert len(parts) >= 5
    assert all(utf16_len(part) <= TELEGRAM_TEXT_LIMIT for part in parts)


def test_markup_too_deep_to_reopen_keeps_the_text():
    text = "<b><i>" * 3 + "а" * 100
    parts = split_message(text, limit=40, parse_mode="HTML")
    assert all(utf16_len(part) <= 40 for part in parts)
    assert "".join(_visible(part) for part in parts) == "а" * 100
