"""The observability stack on this host, for the integration tests: supervisord running the
embedded role (`domos run` on a copy of the config), and real Prometheus, Alertmanager and
postgres_exporter processes on free ports with the project's own configuration."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from runtime.observability.scrape import scrape_config
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def get_json(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else f"{base}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def post_json(base: str, path: str, body: Mapping[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def get_text(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except OSError:
        return None


def localhost_config(
    prometheus_port: int, ports: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The project's scrape config with every `<service>:<port>` target on 127.0.0.1.

    One supervisord runs every role here, so targets that collapse to the same address are
    scraped once. `ports` gives the port of jobs whose process runs on a free port here
    (alertmanager, postgres); such jobs without a port, and the `alerting` block, are left out.
    """
    ports = dict(ports or {})
    ports["prometheus"] = prometheus_port
    config = scrape_config()
    config.pop("alerting")
    # A scrape may wait 2 s for an answer: on a loaded CI machine (2 cores shared by parallel
    # suites) a Python /metrics endpoint can take longer than 1 s, which reads as a down target.
    config["global"] = {
        "scrape_interval": "2s",
        "scrape_timeout": "2s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(REPO / "prometheus" / "alerts.yml")]
    infra = {"prometheus", "alertmanager", "postgres"}
    seen: set[str] = set()
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name in infra and name not in ports:
            continue
        statics = []
        for static in job["static_configs"]:
            local = []
            for target in static["targets"]:
                address = f"127.0.0.1:{ports.get(name, target.split(':')[1])}"
                if address not in seen:
                    seen.add(address)
                    local.append(address)
            if local:
                statics.append({**static, "targets": local})
        if name == "supervisor":
            # Every role's programs are in this one supervisord: each process's group is its
            # role, as a role container's role is its own programs' group.
            job["metric_relabel_configs"] = [
                {"source_labels": ["group"], "regex": "(.+)", "target_label": "role"}
            ]
        if statics:
            jobs.append({**job, "static_configs": statics})
    config["scrape_configs"] = jobs
    return config


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 20) -> None:
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def embedded(tmp_path: Path, sandbox_port: int) -> Iterator[Path]:
    """`domos run` (role embedded, SQLite, the sandbox on `sandbox_port`); yields its config."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "supervisord.conf", home / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", home / "supervisor", symlinks=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "YOOKASSA_", "DOMOS_", "DB_", "SANDBOX_"))
    }
    env["SANDBOX_PORT"] = str(sandbox_port)
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
        _stop(proc, signal.SIGINT, timeout_s=60)


def supervisorctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(config), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextlib.contextmanager
def prometheus(tmp_path: Path, config: Callable[[int], dict[str, Any]]) -> Iterator[str]:
    """A Prometheus on a free port with `config(port)`; yields its base URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: install the Debian package prometheus"
    port = free_port()
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config(port)))
    proc = subprocess.Popen(
        [
            binary,
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
        wait_for(lambda: get_json(base, "/api/v1/status/buildinfo"), 30, "prometheus ready")
        yield base
    finally:
        _stop(proc)


@contextlib.contextmanager
def alertmanager(tmp_path: Path, template: str, env: Mapping[str, str]) -> Iterator[str]:
    """Alertmanager started through the compose entrypoint (prometheus/alertmanager-entrypoint.sh)
    with `template` as its config template and `env` filling it in; yields its base URL."""
    assert shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"), (
        "alertmanager not found: install the Debian package prometheus-alertmanager"
    )
    port = free_port()
    template_path = tmp_path / "alertmanager.template.yml"
    template_path.write_text(template)
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                "sh",
                str(REPO / "prometheus" / "alertmanager-entrypoint.sh"),
                f"--storage.path={tmp_path / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "ALERTMANAGER_TEMPLATE": str(template_path),
                "ALERTMANAGER_CONFIG": str(tmp_path / "alertmanager.yml"),
                **env,
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: proc.poll() is None and get_text(f"{base}/-/ready") is not None,
            30,
            f"alertmanager ready (log: {log})",
        )
        yield base
    finally:
        _stop(proc)


@contextlib.contextmanager
def postgres_exporter(database_url: str) -> Iterator[int]:
    """Debian's prometheus-postgres-exporter scraping `database_url`; yields its port."""
    binary = shutil.which("prometheus-postgres-exporter")
    assert binary, "postgres_exporter not found: install prometheus-postgres-exporter"
    port = free_port()
    separator = "&" if "?" in database_url else "?"
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        env={**os.environ, "DATA_SOURCE_NAME": f"{database_url}{separator}sslmode=disable"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: "pg_up 1" in (get_text(f"http://127.0.0.1:{port}/metrics") or ""),
            30,
            "postgres_exporter connected",
        )
        yield port
    finally:
        _stop(proc)
