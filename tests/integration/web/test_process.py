"""`domos web` as a real process: gunicorn serves the app and static files, stops on SIGTERM;
`domos web createstaff` makes a login."""

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

from tests.conftest import database_environ

ROOT = Path(__file__).resolve().parents[3]
DOMOS = [sys.executable, "-m", "runtime.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_domos_web_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ("sqlite", str(tmp_path / "data")),
        "WEB_STAFF_PASSWORD": "correct-horse-battery",
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    upgraded = subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert upgraded.returncode == 0, upgraded.stderr
    made = subprocess.run(
        [*DOMOS, "web", "createstaff", "--username", "operator"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert "created" in made.stdout

    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen(
        [*DOMOS, "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "web did not start"
                time.sleep(0.2)
        assert (status, body) == (200, b'{"ok": true}')
        assert _get(f"http://127.0.0.1:{port}/static/admin/css/base.css")[0] == 200
        login_status, login_page = _get(f"http://127.0.0.1:{port}/admin/login/")
        assert login_status == 200
        assert b"csrfmiddlewaretoken" in login_page
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log.close()
    assert code == 0, (tmp_path / "web.log").read_text()
