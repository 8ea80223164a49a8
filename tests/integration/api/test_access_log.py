"""`domos api` writes one access line per request at LOG_LEVEL=info and skips formatting them
where the level drops them (services/api/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.api.processes import http, start_api

PATH = "/v1/no-such-route-for-the-access-log"


def _access_lines(log: str) -> list[dict[str, object]]:
    lines = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and PATH in str(record.get("event", "")):
            lines.append(record)
    return lines


@pytest.mark.parametrize(("level", "expected"), [("info", 1), ("warning", 0)])
def test_one_access_line_per_request_where_the_level_keeps_it(
    api_environ: dict[str, str], tmp_path: Path, level: str, expected: int
) -> None:
    program = start_api(api_environ, tmp_path / "api.log", LOG_LEVEL=level)
    try:
        status, _ = http("GET", program.base + PATH, timeout_s=5)
        assert status == 404
    finally:
        # Stopped, the process has written every line it will.
        assert program.stop() == 0, program.logs()
    lines = _access_lines(program.logs())
    assert len(lines) == expected, program.logs()[-2000:]
    for line in lines:
        assert '"GET ' in str(line["event"])
        assert str(line["event"]).endswith(" 404")
