"""jsonb_text's fast way (json's C decoder and encoder) prints what the value-by-value rendering
prints, and refuses what it refuses. The rendering itself is proven against PostgreSQL in
tests/integration/migrate/test_row_text.py."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.migrate.rowtext import _jsonb_render, jsonb_text

_STRINGS = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_STRINGS, inner, max_size=5),
    max_leaves=16,
)
_NUMBERS = st.from_regex(r"\A-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?\Z")


def _slow(text: str) -> str:
    return _jsonb_render(json.loads(text, parse_float=Decimal))


@settings(max_examples=400, deadline=None)
@given(value=_VALUES, ascii=st.booleans(), spaced=st.booleans())
def test_fast_way_prints_what_the_rendering_prints(
    value: object, ascii: bool, spaced: bool
) -> None:
    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(value, ensure_ascii=ascii, separators=separators)
    assert jsonb_text(text) == _slow(text)


@settings(max_examples=300, deadline=None)
@given(number=_NUMBERS)
def test_numbers_are_spelled_as_numeric_prints_them(number: str) -> None:
    text = f'{{"n": {number}, "l": [{number}, "\\u0001"]}}'
    assert jsonb_text(text) == _slow(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"b": 1.50, "aa": [1e2, -0.0, -0, 100e-2, 1.5E-3], "a": null, "a": true}',
        '{"a": 1, "a": {"zz": 2, "y": [3, {"b": "\\u0001", "a": "\\\\u0000"}]}}',
        '"\\u0000"',
        '["\\u0000", 1.5]',
        '{"\\u0000": 1}',
        '  [ "x\\ny\\u0001\\\\\\"\\/", "\\ud83d\\ude00" ] ',
        '{"": {}, "é": [], "ab": "|~", "ä": 1, "b": 2, "bb": 3}',
        "1e400",
        "-0",
        "-0.0",
    ],
)
def test_spellings_jsonb_changes(text: str) -> None:
    assert jsonb_text(text) == _slow(text)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}', "{", '{"a" 1}'])
def test_what_the_rendering_refuses_is_still_refused(text: str) -> None:
    with pytest.raises((ValueError, TypeError)) as slow:
        _slow(text)
    with pytest.raises(slow.type):
        jsonb_text(text)
