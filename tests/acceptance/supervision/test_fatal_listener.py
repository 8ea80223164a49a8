"""The event listener under a real supervisord: process metrics, and FATAL -> shutdown."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from runtime.supervision.programs import LISTENER_METRICS_PORT, LISTENER_NAME, render_listener

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: Not the catalogue's 9200, which `domos run` (test_domos_run, maybe at the same time) serves.
METRICS_PORT = _free_port()


def _metrics() -> str:
    try:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return ""


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(REPO / "supervisord.conf", tmp_path / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", tmp_path / "supervisor", symlinks=True)
    role = tmp_path / "supervisor" / "roles" / "crashing"
    role.mkdir()
    listener = render_listener().replace(
        f"--metrics-port {LISTENER_METRICS_PORT}", f"--metrics-port {METRICS_PORT}"
    )
    assert str(METRICS_PORT) in listener
    (role / f"{LISTENER_NAME}.conf").write_text(listener)
    # A program that never stays up for startsecs: BACKOFF three times (about 10 s, time for the
    # listener to start even on a loaded machine), then FATAL.
    (role / "crasher.conf").write_text(
        "[program:crasher]\ncommand=sh -c 'sleep 1; exit 3'\nstartsecs=2\nstartretries=2\n"
        "autorestart=true\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n"
    )
    (role / "steady.conf").write_text(
        "[program:steady]\ncommand=sleep 600\nstartsecs=1\nstopwaitsecs=2\n"
        "stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n"
    )
    return tmp_path


def test_a_fatal_program_shuts_supervisord_down_after_exporting_its_state(home: Path):
    env = dict(os.environ, DOMOS_ROLE="crashing", DOMOS_HOME=str(home))
    env["PATH"] = f"{BIN}:{env['PATH']}"
    (home / "var" / "run").mkdir(parents=True)
    proc = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(home / "supervisord.conf")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen_steady_up = False
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        text = _metrics()
        if 'domos_supervisor_process_up{group="steady",program="steady"} 1.0' in text:
            seen_steady_up = True
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        output = proc.communicate()[0]
        pytest.fail(f"supervisord did not shut down after the FATAL program:\n{output}")
    output = proc.communicate()[0]
    assert seen_steady_up, output
    assert "gave up: crasher entered FATAL state" in output
    assert "program_fatal" in output
    assert "stopped: steady" in output
    assert proc.returncode == 0
