"""prometheus/: the scrape config against the catalogue, and promtool on every file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.observability.scrape import scrape_config, scraped_roles, targets
from runtime.supervision.programs import LISTENER_METRICS_PORT, PRODUCTION_ROLES, PROGRAMS

PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module")
def committed(repo: Path) -> dict[str, Any]:
    return yaml.safe_load((repo / "prometheus/prometheus.yml").read_text())


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # The Debian package `prometheus` (.ci/apt-packages.txt); a missing tool is a failure.
    assert PROMTOOL, "promtool not found: install the Debian package prometheus"
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def test_promtool_check_config(repo: Path):
    result = _promtool("check", "config", "prometheus/prometheus.yml", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_rules(repo: Path):
    result = _promtool("check", "rules", "prometheus/alerts.yml", cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests(repo: Path):
    tests = sorted(str(p.relative_to(repo)) for p in (repo / "prometheus/tests").glob("*.yml"))
    assert tests
    result = _promtool("test", "rules", *tests, cwd=repo)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rejects_a_broken_rule(tmp_path: Path):
    (tmp_path / "bad.yml").write_text(
        "groups:\n- name: x\n  rules:\n  - alert: X\n    expr: rate(up[5m]\n"
    )
    assert _promtool("check", "rules", "bad.yml", cwd=tmp_path).returncode != 0


def test_every_program_with_metrics_is_scraped_in_its_role_container(committed: dict[str, Any]):
    jobs = targets(committed)
    for program in PROGRAMS:
        if program.metrics_port is None:
            assert program.name not in jobs
        else:
            assert jobs[program.name] == [f"{program.role}:{program.metrics_port}"]


def test_the_supervisor_exporter_of_every_role_is_scraped(committed: dict[str, Any]):
    supervisor = set(targets(committed)["supervisor"])
    assert {f"{role}:{LISTENER_METRICS_PORT}" for role in PRODUCTION_ROLES} <= supervisor
    assert supervisor == {f"{role}:{LISTENER_METRICS_PORT}" for role in scraped_roles()}


def test_every_target_is_a_compose_service(committed: dict[str, Any], compose: dict[str, Any]):
    for job, job_targets in targets(committed).items():
        for target in job_targets:
            host = target.split(":")[0]
            assert host == "localhost" or host in compose["services"], (job, target)


def test_series_are_labelled_with_the_role_only(committed: dict[str, Any]):
    # `program` is a label of the programs' own series; a target label would rename it.
    for job in committed["scrape_configs"]:
        for static in job["static_configs"]:
            assert "program" not in static.get("labels", {})
    assert committed == scrape_config()
