from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runtime.errors import ConfigError
from runtime.monitor.clock import OffsetClock, SystemClock, clock_from_env


@pytest.mark.parametrize(
    ("environ", "offset_s"),
    [
        ({}, None),
        ({"DOMOS_CLOCK_OFFSET_S": "0"}, None),
        ({"DOMOS_CLOCK_OFFSET_S": ""}, None),
        ({"DOMOS_CLOCK_OFFSET_S": "86400"}, 86400.0),
        ({"DOMOS_CLOCK_OFFSET_S": "-3600.5"}, -3600.5),
    ],
)
def test_clock_from_env(environ: dict[str, str], offset_s: float | None) -> None:
    clock = clock_from_env(environ)
    if offset_s is None:
        assert type(clock) is SystemClock
        return
    assert isinstance(clock, OffsetClock)
    shift = (clock.now() - datetime.now(UTC)).total_seconds()
    assert abs(shift - offset_s) < 1.0


def test_a_non_numeric_offset_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DOMOS_CLOCK_OFFSET_S"):
        clock_from_env({"DOMOS_CLOCK_OFFSET_S": "tomorrow"})
