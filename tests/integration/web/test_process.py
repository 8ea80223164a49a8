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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import database_environ
from tests.ports import free_port as _free_port

ROOT = Path(__file__).resolve().parents[3]
DOMOS = [sys.executable, "-m", "runtime.cli"]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _environ(tmp_path: Path, backend: str, pg_url: str | None = None) -> dict[str, str]:
    """A `domos web` environment on `backend`, its domain schema upgraded."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))},
        **database_environ(backend, str(tmp_path / "data"), pg_url),
        "DOMOS_RUN_DIR": str(tmp_path / "run"),
    }
    environ.pop("DJANGO_SETTINGS_MODULE", None)
    upgraded = subprocess.run(
        [*DOMOS, "db", "upgrade"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert upgraded.returncode == 0, upgraded.stderr
    return environ


@contextmanager
def _serving(
    environ: dict[str, str], log_path: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """`domos web` with two workers, answering /healthz; stopped by SIGTERM, which must exit 0."""
    with log_path.open("wb") as log:
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
                    assert _get(f"http://127.0.0.1:{port}/healthz") == (200, b'{"ok": true}')
                    break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "web did not start"
                    time.sleep(0.2)
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
    assert code == 0, log_path.read_text()


def _children(pid: int, count: int) -> list[int]:
    """The process's children once there are `count`: gunicorn forks its workers one after the
    other, and the first can answer before the second exists."""
    deadline = time.monotonic() + 30
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) >= count or time.monotonic() > deadline:
            assert len(children) == count, children
            return [int(child) for child in children]
        time.sleep(0.1)


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
    environ = {**_environ(tmp_path, "sqlite"), "WEB_STAFF_PASSWORD": "correct-horse-battery"}
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

    with _serving(environ, tmp_path / "web.log", port):
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


def _open(pid: int) -> set[str]:
    """What the process's file descriptors point at: paths, `socket:[inode]`, ..."""
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.add(os.readlink(fd))
        except OSError:  # closed meanwhile
            continue
    return targets


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
    environ = _environ(tmp_path, backend, pg_url)
    data = tmp_path / "data"
    port = _free_port()
    with _serving(environ, tmp_path / "web.log", port) as master:
        workers = _children(master.pid, 2)
        # /healthz reads the Django and main databases: enough for both workers to have some.
        for _ in range(40):
            assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        held = {pid: _open(pid) for pid in (master.pid, *workers)}
        if backend == "postgres":
            to_postgres = {
                f"socket:[{inode}]"
                for inode in _connections_to(int(urlsplit(pg_url or "").port or 5432))
            }
            mine = {pid: targets & to_postgres for pid, targets in held.items()}
            assert mine[master.pid] == set(), "the master holds a PostgreSQL connection"
            assert not mine[workers[0]] & mine[workers[1]], "the workers share a connection"
        else:
            databases = {path for path in held[master.pid] if path.startswith(str(data.resolve()))}
            assert databases == set(), f"the master holds database files open: {databases}"
