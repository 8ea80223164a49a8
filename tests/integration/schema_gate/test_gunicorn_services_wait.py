"""`domos botapi` and `domos web` over a schema behind their code: no gunicorn (so nothing
listens) until `domos db upgrade` has run, then they serve; SIGTERM while waiting exits 0.
Both backends, re-checking every 0.2 s."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.schema_gate.programs import (
    NEWEST_LABEL,
    RECHECK,
    Program,
    db,
    wait_for,
)
from tests.ports import free_port

#: The command and the path that answers once it serves.
SERVICES = {
    "botapi": (["botapi", "--workers", "1"], "/health"),
    "web": (["web", "--workers", "1"], "/healthz"),
}


def answers(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@pytest.fixture
def service_environ(behind: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **behind,
        "HOME": str(tmp_path),
        "TELEGRAM_BOT_TOKEN": "100000001:schema-gate-test-token",
        "YOOKASSA_SHOP_ID": "100001",
        "YOOKASSA_SECRET_KEY": "test_schema_gate",
        "WEB_STATIC_ROOT": str(tmp_path / "static"),
    }


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_gunicorn_service_listens_only_once_the_schema_is_upgraded(
    name: str, service_environ: dict[str, str], tmp_path: Path
) -> None:
    command, ready = SERVICES[name]
    port = free_port()
    url = f"http://127.0.0.1:{port}{ready}"
    program = Program(
        [*command, "--host", "127.0.0.1", "--port", str(port), *RECHECK],
        service_environ,
        tmp_path / f"{name}.log",
    )
    try:
        behind_line = program.wait_event("schema_behind")
        assert behind_line["missing"] == [NEWEST_LABEL]
        assert behind_line["command"] == "domos db upgrade"
        time.sleep(0.6)  # three re-checks
        assert program.proc.poll() is None
        assert answers(url) is None  # no gunicorn yet
        assert len(program.events("schema_behind")) == 1

        upgraded = db(service_environ, "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        wait_for(lambda: answers(url) == 200, 60, f"{name} to serve {ready}")
        assert program.events("schema_ready")
        assert program.stop() == 0, program.text()
    finally:
        program.kill()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_gunicorn_service_stopped_while_waiting_exits_cleanly(
    name: str, service_environ: dict[str, str], tmp_path: Path
) -> None:
    command, _ = SERVICES[name]
    program = Program(
        [*command, "--host", "127.0.0.1", "--port", str(free_port()), *RECHECK],
        service_environ,
        tmp_path / f"{name}.log",
    )
    try:
        program.wait_event("schema_behind")
        started = time.monotonic()
        assert program.stop() == 0, program.text()
        assert time.monotonic() - started < 5
    finally:
        program.kill()
