"""The splitter's refusal: one tag or entity no part can hold."""

from __future__ import annotations

import pytest

from monitors.decisions.text_split import TextNotSplittable, split_message
from runtime.errors import DomosError


def test_a_tag_longer_than_a_part_is_refused_with_its_size_and_start() -> None:
    tag = '<a href="https://x/' + "a" * 5000 + '">'
    with pytest.raises(TextNotSplittable) as raised:
        split_message(tag + "link</a> tail", parse_mode="HTML")
    assert isinstance(raised.value, DomosError)
    assert (raised.value.size, raised.value.limit) == (len(tag), 4096)
    message = str(raised.value)
    assert "longer than one part" in message
    assert '<a href="https://x/aaa' in message
    assert len(message) < 200  # the tag is quoted, not copied whole


def test_the_same_text_without_html_splits() -> None:
    text = '<a href="https://x/' + "a" * 5000 + '">link</a> tail'
    assert "".join(split_message(text)) == text
