"""The API behind the reverse proxy README.md asks for (docker/proxy/), against slow clients.

Debian's nginx with docker/proxy/limits.conf in front of a `domos api` process. Clients that
open connections and trickle their headers, never finishing a request, fill the API's
API_MAX_CONCURRENCY when they reach it directly (every member then gets 503: uvicorn has no
deadline for headers); through the proxy they never reach it, and members are served.
docker/proxy/domos.conf, the example site, passes `nginx -t`.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import client as http_client
from http import server as http_server
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.integration.api.processes import Program, http, start_api
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]
PROXY = ROOT / "docker/proxy"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
#: Connections the API holds at once in this test (API_MAX_CONCURRENCY), and the slow clients.
CONCURRENCY = 16
SLOW_CLIENTS = 3 * CONCURRENCY


def _nginx(*args: str, prefix: Path) -> subprocess.CompletedProcess[str]:
    # The Debian package nginx-light (.ci/apt-packages.txt); a missing tool is a failure.
    assert Path(NGINX).exists(), "nginx not found: install the Debian package nginx-light"
    return subprocess.run(
        [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@contextmanager
def serving(tmp_path: Path, conf: Path, port: int) -> Iterator[str]:
    """nginx with `conf`, until it listens on `port`; its base URL."""
    process = subprocess.Popen(
        [
            NGINX,
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "error.log").read_text()
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def proxy(tmp_path: Path, upstream: str) -> Iterator[str]:
    """nginx with limits.conf in front of `upstream`, on a free port; its base URL."""
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"worker_processes 1;\npid {tmp_path}/nginx.pid;\n"
        "events { worker_connections 1024; }\n"
        "http {\n  access_log off;\n"
        f"  include {PROXY}/limits.conf;\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n"
        f"    location / {{ proxy_pass {upstream}; }}\n  }}\n}}\n"
    )
    with serving(tmp_path, conf, port) as base:
        yield base


@contextmanager
def slow_clients(base: str, count: int) -> Iterator[None]:
    """`count` connections that send a request line and one header, and never finish."""
    host, port = base.removeprefix("http://").split(":")
    held = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
            held.append(sock)
        time.sleep(0.3)  # the server has accepted them all
        yield
    finally:
        for sock in held:
            sock.close()


@pytest.fixture
def api(api_environ: dict[str, str], tmp_path: Path) -> Iterator[Program]:
    program = start_api(api_environ, tmp_path / "api.log", API_MAX_CONCURRENCY=str(CONCURRENCY))
    yield program
    assert program.stop() == 0, program.logs()


@pytest.mark.slow
def test_slow_clients_wedge_a_bare_api_but_not_one_behind_the_proxy(
    api: Program, tmp_path: Path
) -> None:
    # Straight at the API: the slow connections take every slot, and a member gets 503.
    with slow_clients(api.base, SLOW_CLIENTS):
        assert http("GET", api.base + "/health", timeout_s=5)[0] == 503
    deadline = time.monotonic() + 5
    while http("GET", api.base + "/health")[0] != 200:
        assert time.monotonic() < deadline, "the API did not recover"
        time.sleep(0.05)

    # Through the proxy: they wait at nginx, and members are served, through it and directly.
    with proxy(tmp_path, api.base) as base, slow_clients(base, SLOW_CLIENTS):
        started = time.monotonic()
        assert http("GET", base + "/health", timeout_s=5)[0] == 200
        assert time.monotonic() - started < 1
        assert http("GET", api.base + "/health", timeout_s=5)[0] == 200


def _example_site(tmp_path: Path) -> str:
    """domos.conf with a throwaway certificate in place of the operator's and limits.conf where
    it includes it."""
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=example.org",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = (PROXY / "domos.conf").read_text()
    site = site.replace("/etc/nginx/conf.d/domos-limits.conf", str(PROXY / "limits.conf"))
    for name in ("api", "pay", "admin"):
        live = f"/etc/letsencrypt/live/{name}.example.org"
        site = site.replace(f"{live}/fullchain.pem", str(tmp_path / "cert.pem"))
        site = site.replace(f"{live}/privkey.pem", str(tmp_path / "key.pem"))
    assert "/etc/" not in site, "a path of the example was not replaced"
    return site


def _nginx_conf(tmp_path: Path, site: str) -> Path:
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    return conf


def test_the_example_site_is_valid_nginx(tmp_path: Path) -> None:
    """`nginx -t` accepts the example site."""
    checked = _nginx(
        "-t", "-c", str(_nginx_conf(tmp_path, _example_site(tmp_path))), prefix=tmp_path
    )
    assert checked.returncode == 0, checked.stderr


class _Recorder(http_server.BaseHTTPRequestHandler):
    """Every program behind the example site: answers 200 and records what reached it."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(f"{self.headers['Host']}{self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


def _get(port: int, host: str, path: str) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http_client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_example_site_keeps_the_programs_metrics_off_the_internet(tmp_path: Path) -> None:
    """Prometheus scrapes /metrics on the compose network; through the public names the
    counters (checkouts made, members' requests) are nobody's business: 404 at nginx, and the
    request never reaches the program. Everything else still goes through."""
    upstream = http_server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    site = _example_site(tmp_path).replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    for program_port in ("8001", "6000", "8002"):
        site = site.replace(
            f"http://127.0.0.1:{program_port};", f"http://127.0.0.1:{upstream.server_port};"
        )
    conf = _nginx_conf(tmp_path, site)
    try:
        with serving(tmp_path, conf, port):
            _Recorder.seen.clear()
            for host in ("api.example.org", "admin.example.org", "pay.example.org"):
                for path in ("/metrics", "/metrics?x=1", "/metrics/", "//metrics", "/%6detrics"):
                    assert _get(port, host, path) == 404, (host, path)
            assert _Recorder.seen == []
            assert _get(port, "api.example.org", "/v1/subscriptions/1") == 200
            assert _get(port, "admin.example.org", "/admin/") == 200
            assert _get(port, "pay.example.org", "/yookassa/webhook") == 200
            assert len(_Recorder.seen) == 3
    finally:
        upstream.shutdown()
        upstream.server_close()
