"""supervisord's own output with the repository's configuration, on a role of many programs.

- every supervisord line is printed once (`logfile=/dev/stdout` in the foreground echoed each
  line a second time unless `silent=true`);
- the event listener, as rendered from the catalogue, keeps up with a role starting at once
  (supervisord's default `buffer_size` of 10 discarded events on every `make run`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runtime.supervision.programs import LISTENER_METRICS_PORT, LISTENER_NAME

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
#: Twice the programs of the embedded role.
PROGRAMS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    shutil.copy(REPO / "supervisord.conf", tmp_path / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", tmp_path / "supervisor", symlinks=True)
    role = tmp_path / "supervisor" / "roles" / "busy"
    role.mkdir()
    # The listener exactly as rendered, but on a free metrics port.
    rendered = (tmp_path / "supervisor" / "programs" / f"{LISTENER_NAME}.conf").read_text()
    port = str(_free_port())
    (role / f"{LISTENER_NAME}.conf").write_text(
        rendered.replace(f"--metrics-port {LISTENER_METRICS_PORT}", f"--metrics-port {port}")
    )
    for index in range(PROGRAMS):
        (role / f"p{index}.conf").write_text(
            f"[program:p{index}]\ncommand=sleep 600\nstartsecs=1\nstopwaitsecs=2\n"
            "stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n"
        )
    (tmp_path / "var" / "run").mkdir(parents=True)
    return tmp_path


def test_each_line_once_and_no_event_is_discarded_while_a_role_starts(home: Path) -> None:
    env = dict(os.environ, DOMOS_ROLE="busy", DOMOS_HOME=str(home))
    env["PATH"] = f"{BIN}:{env['PATH']}"
    proc = subprocess.Popen(
        [str(BIN / "supervisord"), "-c", str(home / "supervisord.conf")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            running = sum(" entered RUNNING state" in line for line in list(lines))
            if running >= PROGRAMS + 1:
                break
            time.sleep(0.2)
        # A few TICK_5 events after the start go through the same buffer.
        time.sleep(6)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        reader.join(10)
        proc.stdout.close()
    output = "".join(lines)
    running = output.count(" entered RUNNING state")
    assert proc.returncode == 0, output
    assert running == PROGRAMS + 1, output
    assert output.count("supervisord started with pid") == 1, output
    assert output.count("spawned: 'p0' with pid") == 1, output
    assert "event buffer overflowed" not in output, output
