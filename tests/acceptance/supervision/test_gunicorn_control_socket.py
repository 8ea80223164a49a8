"""`domos web` and `domos botapi` open no gunicorn control socket under $HOME.

gunicorn 25.1+ creates `$HOME/.gunicorn/gunicorn.ctl` by default: in the image $HOME is the
root-owned /app (`Permission denied: '/app/.gunicorn'` in every start), and on a laptop every
checkout's gunicorns would share one ~/.gunicorn. Both services are started as supervisord
starts them, with a $HOME of their own, and that $HOME must stay empty.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
DOMOS = str(Path(sys.executable).parent / "domos")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # gunicorn and a worker are up; the status is not this test's concern
    except OSError:
        return False


@pytest.mark.parametrize(
    ("command", "ready_path"),
    [
        (["botapi", "--workers", "1"], "/health"),
        (["web", "--no-migrate", "--workers", "1"], "/healthz"),
    ],
)
def test_gunicorn_leaves_home_alone(tmp_path: Path, command: list[str], ready_path: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_", "DOMOS_", "DJANGO_", "XDG_"))
    }
    env.update(
        HOME=str(home),
        DB_TYPE="sqlite",
        DOMOS_DATA_DIR=str(tmp_path / "data"),
        DOMOS_RUN_DIR=str(tmp_path / "run"),
        TELEGRAM_BOT_TOKEN="100000001:control-socket-test-token",
        YOOKASSA_SHOP_ID="100001",
        YOOKASSA_SECRET_KEY="test_control_socket",
    )
    log_path = tmp_path / "program.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [DOMOS, *command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}{ready_path}"):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"no answer:\n{log_path.read_text()}"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    output = log_path.read_text()
    assert not (home / ".gunicorn").exists(), output
    assert "Control socket" not in output, output
