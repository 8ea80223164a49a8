"""The Prometheus scrape config, one job per supervised program, from the program catalogue.

Targets are `<compose service>:<metrics port>`: the compose service of a program is its role
(one container per role). Every role container also runs the supervisord event listener, scraped
by the `supervisor` job. Series carry a `role` label; the `program` label stays free for the
programs' own metrics (domos_http_requests_total{program}), so nothing is renamed `exported_*`.
Beside the programs: Alertmanager (where fired alerts go, and its own delivery metrics) and
postgres_exporter (PostgreSQL's own metrics, the `pg_*` series of the dashboard).
"""

from __future__ import annotations

from typing import Any

from runtime.observability.alerting import ALERTMANAGER_PORT, alerting_block
from runtime.supervision.programs import (
    LISTENER_METRICS_PORT,
    PRODUCTION_ROLES,
    PROGRAMS,
    Program,
)

SCRAPE_INTERVAL_S = 15
EVALUATION_INTERVAL_S = 15
#: Relative to prometheus.yml (compose mounts prometheus/ at /etc/prometheus).
RULE_FILES = ("alerts.yml",)
#: The sandbox container runs only under the compose profile `sandbox`; its targets are labelled
#: so the "target down" alert can leave them out when the profile is off.
OPTIONAL_ROLES = ("sandbox",)
#: Compose services beside the roles: job name -> `<service>:<port>`.
ALERTMANAGER_TARGET = f"alertmanager:{ALERTMANAGER_PORT}"
POSTGRES_EXPORTER_PORT = 9187
INFRA_JOBS = {
    "alertmanager": ALERTMANAGER_TARGET,
    "postgres": f"postgres-exporter:{POSTGRES_EXPORTER_PORT}",
}

HEADER = (
    "# Rendered from runtime/supervision/programs.py by `domos observability render`;\n"
    "# edit the catalogue or runtime/observability/scrape.py, not this file.\n"
)


def compose_service(role: str) -> str:
    """The compose service (and host name on the compose network) that runs `role`."""
    return role


def scraped_programs() -> tuple[Program, ...]:
    return tuple(program for program in PROGRAMS if program.metrics_port is not None)


def scraped_roles() -> tuple[str, ...]:
    """Roles with a container in compose: the production roles, and the optional ones that the
    catalogue has programs for."""
    present = {program.role for program in PROGRAMS}
    return (*PRODUCTION_ROLES, *(role for role in OPTIONAL_ROLES if role in present))


def _labels(role: str) -> dict[str, str]:
    labels = {"role": role}
    if role in OPTIONAL_ROLES:
        labels["optional"] = "true"
    return labels


def scrape_config() -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "prometheus",
            "static_configs": [{"targets": ["localhost:9090"]}],
        },
        {
            "job_name": "supervisor",
            "static_configs": [
                {
                    "targets": [f"{compose_service(role)}:{LISTENER_METRICS_PORT}"],
                    "labels": _labels(role),
                }
                for role in scraped_roles()
            ],
        },
    ]
    for program in scraped_programs():
        jobs.append(
            {
                "job_name": program.name,
                "static_configs": [
                    {
                        "targets": [f"{compose_service(program.role)}:{program.metrics_port}"],
                        "labels": _labels(program.role),
                    }
                ],
            }
        )
    for job_name, target in INFRA_JOBS.items():
        jobs.append({"job_name": job_name, "static_configs": [{"targets": [target]}]})
    return {
        "global": {
            "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
            "evaluation_interval": f"{EVALUATION_INTERVAL_S}s",
            "external_labels": {"system": "domos"},
        },
        "alerting": alerting_block(ALERTMANAGER_TARGET),
        "rule_files": list(RULE_FILES),
        "scrape_configs": jobs,
    }


def render_scrape_config(config: dict[str, Any] | None = None) -> str:
    import yaml

    body: str = yaml.safe_dump(
        scrape_config() if config is None else config, sort_keys=False, default_flow_style=False
    )
    return HEADER + body


def targets(config: dict[str, Any]) -> dict[str, list[str]]:
    """job name -> its targets, from a parsed scrape config."""
    return {
        job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
        for job in config["scrape_configs"]
    }
