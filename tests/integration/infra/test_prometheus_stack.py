"""The real stack on this host: supervisord (role embedded, via `domos run` on a copy of the
config) scraped by a real Prometheus with the project's scrape config (targets pointed at
localhost) and alert rules; every dashboard query is evaluated through Prometheus' HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from runtime.observability.dashboards import RATE, panel_queries
from runtime.observability.scrape import scrape_config

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
PROMETHEUS = shutil.which("prometheus")
T = TypeVar("T")

#: Panels whose series the embedded programs export from their start (plus one restart, the
#: demo load below). The others (HTTP services, payments, outbox outcomes) need programs that
#: are not in the catalogue yet or real traffic; their queries must still evaluate cleanly.
PANELS_WITH_DATA = {
    "Programs running",
    "Program restarts (1 h)",
    "Scrape targets up",
    "Ticks by outcome",
    "Tick errors",
    "Tick duration p95",
    "Time since last success",
    "Items processed",
    "Leader",
    "Outbox backlog",
    "Oldest due message waiting",
    "Dead letters stored",
    "Pool connections",
    "Pool waiters",
}

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(predicate: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def _get(base: str, path: str, **params: str) -> dict[str, Any] | None:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def localhost_config(prometheus_port: int) -> dict[str, Any]:
    """The project's scrape config with every `<service>:<port>` target on 127.0.0.1.

    One supervisord runs every role here, so targets that collapse to the same address are
    scraped once.
    """
    config = scrape_config()
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(REPO / "prometheus" / "alerts.yml")]
    seen: set[str] = set()
    for job in config["scrape_configs"]:
        statics = []
        for static in job["static_configs"]:
            local = []
            for target in static["targets"]:
                port = prometheus_port if job["job_name"] == "prometheus" else target.split(":")[1]
                address = f"127.0.0.1:{port}"
                if address not in seen:
                    seen.add(address)
                    local.append(address)
            if local:
                statics.append({**static, "targets": local})
        job["static_configs"] = statics
    config["scrape_configs"] = [job for job in config["scrape_configs"] if job["static_configs"]]
    return config


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "supervisord.conf", home / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", home / "supervisor", symlinks=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "YOOKASSA_", "DOMOS_", "DB_", "SANDBOX_"))
    }
    env["SANDBOX_PORT"] = str(_free_port())
    config = home / "supervisord.conf"
    proc = subprocess.Popen(
        [str(BIN / "domos"), "run", "--config", str(config)],
        env=env,
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield config
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    assert PROMETHEUS, "prometheus not found: install the Debian package prometheus"
    port = _free_port()
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(localhost_config(port)))
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _get(base, "/api/v1/status/buildinfo"), 30, "prometheus ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _query(base: str, expr: str) -> dict[str, Any]:
    answer = _get(base, "/api/v1/query", query=expr.replace(RATE, "30s"))
    assert answer is not None, expr
    return answer


def _all_targets_up(base: str) -> list[str] | None:
    answer = _get(base, "/api/v1/targets")
    if not answer:
        return None
    active = answer["data"]["activeTargets"]
    jobs = [t["labels"]["job"] for t in active if t["health"] == "up"]
    return jobs if active and len(jobs) == len(active) else None


def test_prometheus_scrapes_every_program_and_every_panel_query_evaluates(
    embedded: Path, prometheus: str
):
    jobs = _wait_for(lambda: _all_targets_up(prometheus), 60, "every target up")
    assert {"supervisor", "notifymonitor", "recurrent_payments", "web"} <= set(jobs)
    # web counts its requests across gunicorn workers; Prometheus' own scrapes are some.
    web_requests = 'domos_http_requests_total{job="web", program="web", route="/metrics"}'
    _wait_for(lambda: _query(prometheus, web_requests)["data"]["result"], 30, "web's requests")

    # The container HEALTHCHECK command answers for the role against the real supervisord.
    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "domos"), "health", "--role", "embedded", "--config", str(embedded)],
            env={**os.environ, "DOMOS_RUN_DIR": str(embedded.parent / "var" / "run")},
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )

    healthy = _wait_for(lambda: (r := health()).returncode == 0 and r, 30, "domos health 0")
    assert "notifymonitor (monitor): healthy" in healthy.stdout
    assert "sandbox: healthy: RUNNING" in healthy.stdout

    # Demo load: one restart, so the restart panel and counters have something to show.
    subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(embedded), "restart", "monitors:notifymonitor"],
        check=True,
        capture_output=True,
        timeout=60,
    )

    def panels_without_data() -> set[str]:
        missing = set()
        for title, expr in panel_queries():
            answer = _query(prometheus, expr)
            assert answer["status"] == "success", (title, expr, answer)
            if title in PANELS_WITH_DATA and not answer["data"]["result"]:
                missing.add(title)
        # A panel with several queries has data when any of them has.
        with_data = {
            title for title, expr in panel_queries() if _query(prometheus, expr)["data"]["result"]
        }
        return missing - with_data

    missing_data: list[set[str]] = [set()]

    def all_panels_have_data() -> bool:
        missing_data[0] = panels_without_data()
        return not missing_data[0]

    deadline = time.monotonic() + 45
    while not all_panels_have_data() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing_data[0], f"panels without data: {sorted(missing_data[0])}"

    rules = _get(prometheus, "/api/v1/rules")
    assert rules is not None
    loaded = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
    committed = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())
    expected = sum(len(group["rules"]) for group in committed["groups"])
    assert len(loaded) == expected
    assert all(rule["health"] != "err" for rule in loaded), [
        (rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] == "err"
    ]
