"""The real stack on this host: supervisord (role embedded, via `domos run` on a copy of the
config) and Debian's postgres_exporter on the test PostgreSQL, scraped by a real Prometheus with
the project's scrape config (targets pointed at localhost) and alert rules; every dashboard query
and template variable is evaluated through Prometheus' HTTP API."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.observability.dashboards import VARIABLES, expand, panel_queries
from runtime.observability.metric_names import POSTGRES_EXPORTER_METRICS
from tests.integration.infra import stack
from tests.integration.infra.stack import BIN, REPO

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
    # postgres_exporter on the test server.
    "PostgreSQL up",
    "Connections",
    "Locks by mode",
    "Transactions",
    "Database size",
    "Longest transaction",
}

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Path]:
    with stack.embedded(tmp_path, stack.free_port()) as config:
        yield config


@pytest.fixture
def prometheus(tmp_path: Path, pg_url: str) -> Iterator[str]:
    with stack.postgres_exporter(pg_url) as exporter_port:

        def config(port: int) -> dict[str, Any]:
            return stack.localhost_config(port, {"postgres": exporter_port})

        with stack.prometheus(tmp_path, config) as base:
            yield base


def _query(base: str, expr: str) -> dict[str, Any]:
    answer = stack.get_json(base, "/api/v1/query", query=expand(expr))
    assert answer is not None, expr
    return answer


def _all_targets_up(base: str) -> list[str] | None:
    answer = stack.get_json(base, "/api/v1/targets")
    if not answer:
        return None
    active = answer["data"]["activeTargets"]
    jobs = [t["labels"]["job"] for t in active if t["health"] == "up"]
    return jobs if active and len(jobs) == len(active) else None


def test_prometheus_scrapes_every_program_and_every_panel_query_evaluates(
    embedded: Path, prometheus: str
):
    jobs = stack.wait_for(lambda: _all_targets_up(prometheus), 60, "every target up")
    assert {"supervisor", "notifymonitor", "recurrent_payments", "web", "postgres"} <= set(jobs)
    # web counts its requests across gunicorn workers; Prometheus' own scrapes are some.
    web_requests = 'domos_http_requests_total{job="web", program="web", route="/metrics"}'
    stack.wait_for(lambda: _query(prometheus, web_requests)["data"]["result"], 30, "web's requests")

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

    healthy = stack.wait_for(lambda: (r := health()).returncode == 0 and r, 30, "domos health 0")
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

    rules = stack.get_json(prometheus, "/api/v1/rules")
    assert rules is not None
    loaded = [rule for group in rules["data"]["groups"] for rule in group["rules"]]
    committed = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())
    expected = sum(len(group["rules"]) for group in committed["groups"])
    assert len(loaded) == expected
    assert all(rule["health"] != "err" for rule in loaded), [
        (rule["name"], rule.get("lastError")) for rule in loaded if rule["health"] == "err"
    ]

    # The template variables offer choices: label_values(selector, label) as Grafana asks it.
    for variable in VARIABLES:
        values = stack.get_json(
            prometheus,
            f"/api/v1/label/{variable.label}/values",
            **{"match[]": expand(variable.selector)},
        )
        assert values is not None, variable
        assert values["data"], variable
    assert "monitors" in stack.get_json(prometheus, "/api/v1/label/role/values")["data"]

    # Every postgres_exporter series the project names (dashboard, runbooks) is exported.
    missing = [
        name
        for name in sorted(POSTGRES_EXPORTER_METRICS)
        if not _query(prometheus, name)["data"]["result"]
    ]
    assert not missing, missing
