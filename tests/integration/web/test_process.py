"""`domos web` as a real process: gunicorn serves the app, static files and /metrics (two
workers added up), stops on SIGTERM; `domos web createstaff` makes a login."""

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
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


def _web_requests(exposition: str) -> dict[tuple[str, str, str], float]:
    counts = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "domos_http_requests_total" and sample.labels["program"] == "web":
                labels = sample.labels
                counts[(labels["route"], labels["method"], labels["status"])] = sample.value
    return counts


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
        [*DOMOS, "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
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
        # One worker waits for the rest of a request while the other serves ten: whichever
        # answers the scrape, /metrics must count both workers' requests (prometheus_client's
        # multiprocess files, added up).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            time.sleep(0.5)
            for _ in range(10):
                assert _get(f"http://127.0.0.1:{port}/admin/login/")[0] == 200
            slow.sendall(b"Connection: close\r\n\r\n")
            assert slow.makefile("rb").readline().startswith(b"HTTP/1.1 200")
        scraped = _get(f"http://127.0.0.1:{port}/metrics")
        assert scraped[0] == 200
        counts = _web_requests(scraped[1].decode())
        assert counts[("/admin/login/", "GET", "200")] == 11
        assert counts[("/healthz", "GET", "200")] == 2  # the start-up probe and the slow one
        assert counts[("/static/<path>", "GET", "200")] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(30)
        log.close()
    assert code == 0, (tmp_path / "web.log").read_text()


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _open_files(pid: int) -> set[str]:
    files = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            files.add(os.readlink(fd))
        except OSError:
            continue
    return files


def _connections_to(port: int) -> set[int]:
    """Socket inodes of the machine's TCP connections to `port` (/proc/net/tcp, tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # ESTABLISHED
                inodes.add(int(fields[9]))
    return inodes


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_workers_share_no_database_connection(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """gunicorn forks its workers from the process that ran the migrations: what that process
    left open, every worker would hold. On PostgreSQL that was one socket for both workers
    (their queries interleaved on it: the browser saw a 500 now and then)."""
    pg_url = request.getfixturevalue("pg_domos_url") if backend == "postgres" else None
    data = tmp_path / "data"
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ(backend, str(data), pg_url),
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    upgraded = subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert upgraded.returncode == 0, upgraded.stderr
    port = _free_port()
    log = (tmp_path / "web.log").open("wb")
    master = subprocess.Popen(
        [*DOMOS, "web", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
                break
            except OSError:
                assert master.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, "web did not start"
                time.sleep(0.2)
        workers = [
            int(pid)
            for pid in Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
        ]
        assert len(workers) == 2, workers
        # Requests that read the database, enough for both workers to have served some.
        for _ in range(20):
            assert _get(f"http://127.0.0.1:{port}/admin/login/?next=/admin/")[0] == 200
            assert _get(f"http://127.0.0.1:{port}/admin/")[0] in (200, 302)
        held = {pid: _socket_inodes(pid) for pid in (master.pid, *workers)}
        if backend == "postgres":
            to_postgres = _connections_to(int(urlsplit(pg_url or "").port or 5432))
            mine = {pid: inodes & to_postgres for pid, inodes in held.items()}
            assert mine[master.pid] == set(), "the master holds a PostgreSQL connection"
            assert not mine[workers[0]] & mine[workers[1]], "the workers share a connection"
        else:
            databases = {
                path for path in _open_files(master.pid) if path.startswith(str(data.resolve()))
            }
            assert databases == set(), f"the master holds database files open: {databases}"
    finally:
        master.send_signal(signal.SIGTERM)
        code = master.wait(30)
        log.close()
    assert code == 0, (tmp_path / "web.log").read_text()
