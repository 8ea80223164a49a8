"""Under a real supervisord, with the catalogue's restart settings: a program that fails on its
configuration after startsecs (as the real ones do, after seconds of imports) is not restarted
forever; the event listener shuts supervisord down within seconds. A program failing for another
reason is still restarted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.errors import EX_CONFIG
from runtime.supervision.programs import (
    LISTENER_METRICS_PORT,
    LISTENER_NAME,
    Program,
    render_listener,
    render_program,
)

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _home(tmp_path: Path, name: str, command: str) -> Path:
    shutil.copy(REPO / "supervisord.conf", tmp_path / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", tmp_path / "supervisor", symlinks=True)
    role = tmp_path / "supervisor" / "roles" / "failing"
    role.mkdir()
    # The catalogue's listener without its fixed metrics port, which test_fatal_listener (maybe
    # running at the same time) serves.
    listener = render_listener().replace(f" --metrics-port {LISTENER_METRICS_PORT}", "")
    assert "--metrics-port" not in listener
    (role / f"{LISTENER_NAME}.conf").write_text(listener)
    # Rendered as every catalogue program is (startsecs, startretries, autorestart, exitcodes).
    program = Program(name, "failing", command, None, stopwaitsecs=2)
    (role / f"{name}.conf").write_text(render_program(program))
    (tmp_path / "var" / "run").mkdir(parents=True)
    return tmp_path


def _start(home: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, DOMOS_ROLE="failing", DOMOS_HOME=str(home))
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(home / "supervisord.conf")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.communicate()[0]


def test_a_config_error_after_startsecs_shuts_supervisord_down_within_seconds(tmp_path: Path):
    # Past startsecs=1, so supervisord calls it RUNNING and would never call it FATAL.
    home = _home(tmp_path, "misconfigured", f"sh -c 'sleep 2; exit {EX_CONFIG}'")
    proc = _start(home)
    started = time.monotonic()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"supervisord still restarting the program after 30 s:\n{_stop(proc)}")
    output = _stop(proc)
    assert time.monotonic() - started < 30
    assert output.count("spawned: 'misconfigured'") == 1, output
    assert f"exited: misconfigured (exit status {EX_CONFIG}; expected)" in output
    assert "program_config_error" in output
    assert '"program": "misconfigured"' in output or "program=misconfigured" in output, output
    assert proc.returncode == 0


def test_a_program_failing_otherwise_is_still_restarted(tmp_path: Path):
    home = _home(tmp_path, "flaky", "sh -c 'sleep 1.5; exit 1'")
    proc = _start(home)
    try:
        deadline = time.monotonic() + 12
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "supervisord shut down on a transient failure"
    finally:
        output = _stop(proc)
    assert output.count("spawned: 'flaky'") >= 3, output
    assert "exited: flaky (exit status 1; not expected)" in output
    assert "program_config_error" not in output
    assert "program_fatal" not in output
