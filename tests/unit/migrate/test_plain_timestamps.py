"""The Arrow rule's fixed-position reading of `YYYY-MM-DD HH:MM:SS` texts gives what its regex
gives: the same moments, and NotConvertible for the same texts."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runtime.migrate import arrow_rules
from runtime.migrate.plan import ColumnPlan

#: Accepted by the regex but not 19 characters: the whole array then takes the regex.
REGEX_ONLY = "2000-01-01 00:00:00.5"

PLAIN = st.builds(
    lambda moment, separator: moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S"),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from([" ", "T"]),
)
#: 19 characters, but not a real day or time, or not in the form.
NEAR_MISSES = st.sampled_from(
    [
        "2023-02-29 10:00:00",
        "2024-13-01 10:00:00",
        "2024-00-10 10:00:00",
        "2024-01-00 10:00:00",
        "2024-01-01 24:00:00",
        "2024-01-01 23:60:00",
        "2024-01-01 23:59:60",
        "0000-01-01 00:00:00",
        "2024-01-01t10:00:00",
        "2024/01/01 10:00:00",
        "2024-01-01 10-00-00",
        "2024-01-0a 10:00:00",
        "２024-01-01 10:00:0",
        "2024-01-01 10:00:0 ",
    ]
)


def _moments(texts: list[str | None]) -> list[object]:
    column = ColumnPlan("c", "c", "timestamp with time zone", False, False, "test")
    classes = {"text": pa.array(texts, pa.string())}
    try:
        return arrow_rules.convert(column, classes).to_pylist()
    except arrow_rules.NotConvertible:
        return ["NotConvertible"]


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), PLAIN, NEAR_MISSES), min_size=1, max_size=20),
    start=st.integers(0, 3),
)
@example(texts=["2024-02-29 23:59:59", None, "1970-01-01T00:00:00"], start=0)
@example(texts=["2023-02-29 10:00:00"], start=0)
def test_fixed_positions_and_the_regex_agree(texts: list[str | None], start: int) -> None:
    start = min(start, len(texts) - 1)
    fast = _moments(texts[start:])
    regex = _moments([*texts[start:], REGEX_ONLY])
    assert fast == (regex if regex == ["NotConvertible"] else regex[:-1])


def test_a_sliced_array_is_read_from_its_own_offset() -> None:
    column = ColumnPlan("c", "c", "timestamp with time zone", False, False, "test")
    texts = pa.array(["2024-01-01 00:00:00", "2024-01-02 00:00:00", "2024-01-03 00:00:00"])
    (moment,) = arrow_rules.convert(column, {"text": texts.slice(2)}).to_pylist()
    assert moment.day == 3


@pytest.mark.parametrize("texts", [[None, None], []])
def test_no_text_at_all(texts: list[None]) -> None:
    assert _moments(texts) == [None] * len(texts)
