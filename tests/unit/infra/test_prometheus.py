"""prometheus/: the scrape config against the catalogue, promtool on every file, and the
Alertmanager config (filled in by its entrypoint, checked by amtool)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.observability.alerting import (
    PLACEHOLDERS,
    SCHEMA_BEHIND,
    SCHEMA_BEHIND_EXPLAINS,
    SCHEMA_GATED_LISTENERS,
)
from runtime.observability.scrape import (
    EVALUATION_INTERVAL_S,
    SCRAPE_INTERVAL_S,
    scrape_config,
    scraped_roles,
    targets,
)
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


# --- alert delivery: Alertmanager -------------------------------------------------------------

AMTOOL = shutil.which("amtool")
ENTRYPOINT = "prometheus/alertmanager-entrypoint.sh"
DELIVERY_ENV = {
    "TELEGRAM_BOT_TOKEN": "123456789:AAFsandbox-default-token-for-tests",
    "ALERT_CHAT_ID": "-1001000000001",
    "TELEGRAM_API_URL": "http://sandbox:8081/",
}


def _entrypoint(
    repo: Path, tmp_path: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Runs the compose entrypoint on the host with a stand-in `alertmanager` that records its
    arguments; returns the result and the config it would have loaded."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "alertmanager"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "argv"}\n')
    fake.chmod(0o755)
    config = tmp_path / "alertmanager.yml"
    result = subprocess.run(
        ["sh", str(repo / ENTRYPOINT), "--storage.path=/alertmanager"],
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "ALERTMANAGER_TEMPLATE": str(repo / "prometheus/alertmanager.yml"),
            "ALERTMANAGER_CONFIG": str(config),
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result, config


def test_the_entrypoint_fills_in_the_config_and_amtool_accepts_it(repo: Path, tmp_path: Path):
    result, config = _entrypoint(repo, tmp_path, **DELIVERY_ENV)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv").read_text().split() == [
        f"--config.file={config}",
        "--storage.path=/alertmanager",
    ]
    assert config.stat().st_mode & 0o077 == 0, "the filled-in config holds the bot token"
    text = config.read_text()
    assert "${" not in text
    telegram = yaml.safe_load(text)["receivers"][0]["telegram_configs"][0]
    assert telegram["chat_id"] == -1001000000001  # an integer, as Alertmanager requires
    assert telegram["bot_token"] == DELIVERY_ENV["TELEGRAM_BOT_TOKEN"]
    assert telegram["api_url"] == "http://sandbox:8081"  # no // before /bot<token>
    assert telegram["send_resolved"] is True
    assert telegram["parse_mode"] == "HTML"

    assert AMTOOL, "amtool not found: install the Debian package prometheus-alertmanager"
    checked = subprocess.run(
        [AMTOOL, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_amtool_rejects_the_template_unfilled_and_a_broken_config(repo: Path, tmp_path: Path):
    # The committed file is a template: a chat id that is no integer fails, so the test above
    # proves the substitution, not just the file.
    assert AMTOOL, "amtool not found: install the Debian package prometheus-alertmanager"
    unfilled = subprocess.run(
        [AMTOOL, "check-config", str(repo / "prometheus/alertmanager.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unfilled.returncode != 0
    broken = tmp_path / "broken.yml"
    broken.write_text("route:\n  receiver: nobody\nreceivers: []\n")
    assert subprocess.run([AMTOOL, "check-config", str(broken)], timeout=60).returncode != 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ALERT_CHAT_ID", "", "ALERT_CHAT_ID is required"),
        ("ALERT_CHAT_ID", "@operators", "numeric chat id"),
        ("ALERT_CHAT_ID", "-100x", "numeric chat id"),
        ("TELEGRAM_BOT_TOKEN", "", "TELEGRAM_BOT_TOKEN is required"),
        ("TELEGRAM_BOT_TOKEN", "123:abc'\nx: 1", "characters a bot token has not"),
        ("TELEGRAM_API_URL", "sandbox:8081", "http(s) URL"),
        ("TELEGRAM_API_URL", "http://sandbox:8081/|x", "characters a base URL has not"),
    ],
)
def test_the_entrypoint_refuses_what_would_break_the_config(
    repo: Path, tmp_path: Path, variable: str, value: str, message: str
):
    result, config = _entrypoint(repo, tmp_path, **{**DELIVERY_ENV, variable: value})
    assert result.returncode == 1
    assert message in result.stderr
    assert not config.exists()
    assert not (tmp_path / "argv").exists()


def test_prometheus_sends_alerts_to_the_alertmanager_service(
    committed: dict[str, Any], compose: dict[str, Any]
):
    (alertmanagers,) = committed["alerting"]["alertmanagers"]
    (static,) = alertmanagers["static_configs"]
    (target,) = static["targets"]
    host, port = target.split(":")
    assert host in compose["services"]
    assert (
        f"127.0.0.1:${{ALERTMANAGER_PUBLISHED_PORT:-9093}}:{port}"
        in (compose["services"][host]["ports"])
    )
    jobs = targets(committed)
    assert jobs["alertmanager"] == [target]
    assert jobs["postgres"] == ["postgres-exporter:9187"]


def test_compose_runs_alertmanager_through_the_entrypoint_with_its_variables(
    compose: dict[str, Any], repo: Path
):
    service = compose["services"]["alertmanager"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    config_dir = mounts["./prometheus"]
    assert service["entrypoint"] == ["/bin/sh", f"{config_dir}/alertmanager-entrypoint.sh"]
    assert (repo / ENTRYPOINT).is_file()
    assert set(service["environment"]) == set(PLACEHOLDERS)
    assert service["environment"]["ALERT_CHAT_ID"].startswith("${ALERT_CHAT_ID:?")


def test_every_program_with_a_scrape_job_has_its_inhibition(repo: Path):
    config = yaml.safe_load((repo / "prometheus/alertmanager.yml").read_text())
    silenced = {
        rule["target_matchers"][0]
        for rule in config["inhibit_rules"]
        if any(m.startswith("program=") for m in rule["source_matchers"])
    }
    assert silenced == {
        f'job="{program.name}"' for program in PROGRAMS if program.metrics_port is not None
    }
    role_rule = config["inhibit_rules"][0]
    assert role_rule["source_matchers"] == ['alertname="DomosTargetDown"', 'job="supervisor"']
    assert role_rule["equal"] == ["role"]
    assert config["route"]["repeat_interval"]


def test_the_schema_inhibition_names_alerts_and_jobs_that_exist(repo: Path):
    """A renamed alert or scrape job would leave DomosSchemaBehind silencing nothing."""
    rules = yaml.safe_load((repo / "prometheus/alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {SCHEMA_BEHIND, *SCHEMA_BEHIND_EXPLAINS} <= alerts
    scrape = yaml.safe_load((repo / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"] for job in scrape["scrape_configs"]}
    assert set(SCHEMA_GATED_LISTENERS) <= jobs
    config = yaml.safe_load((repo / "prometheus/alertmanager.yml").read_text())
    sources = [
        r for r in config["inhibit_rules"] if f'alertname="{SCHEMA_BEHIND}"' in r["source_matchers"]
    ]
    assert len(sources) == 2


def test_every_alert_is_its_own_group(repo: Path):
    """Grouped by alert name and role, a new monitor's DomosMonitorSilent joined the open group
    of another monitor and was not posted: each label set is now a group of its own."""
    config = yaml.safe_load((repo / "prometheus/alertmanager.yml").read_text())
    assert config["route"]["group_by"] == ["..."]
    assert all("group_by" not in route for route in config["route"]["routes"])


def test_monitor_silent_allows_for_the_scrape_and_evaluation_intervals(repo: Path):
    """Prometheus sees a monitor's last-progress timestamp as of its last scrape and evaluates
    the rule later still: the limit must exceed both intervals whatever the monitor's own."""
    rules = yaml.safe_load((repo / "prometheus/alerts.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r["alert"] == "DomosMonitorSilent"]
    floor = re.search(r"clamp_min\(3 \* domos_monitor_interval_seconds, (\d+)\)", rule["expr"])
    assert floor, rule["expr"]
    assert int(floor.group(1)) >= 2 * (SCRAPE_INTERVAL_S + EVALUATION_INTERVAL_S)
    # The rule test that shows it runs at the production cadence.
    test = yaml.safe_load((repo / "prometheus/tests/monitor_silent_test.yml").read_text())
    assert test["evaluation_interval"] == f"{EVALUATION_INTERVAL_S}s"
    assert test["tests"][0]["interval"] == f"{SCRAPE_INTERVAL_S}s"
