"""`domos observability render [--check]` and `domos health`.

render: write prometheus/prometheus.yml, prometheus/alertmanager.yml and
grafana/dashboards/domos.json from the catalogue and the panel list; --check reports
differences and exits 1 (the tests run it).
health: the container HEALTHCHECK of DOMOS_ROLE; exit 0 healthy, 1 not.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    render = subparsers.add_parser(
        "observability",
        help="render (or --check) the Prometheus and Alertmanager configs, the Grafana dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("action", choices=["render"])
    render.add_argument("--root", type=Path, default=Path("."), help="repository root")
    render.add_argument("--check", action="store_true", help="report differences; exit 1")
    render.set_defaults(handler=render_command)

    health = subparsers.add_parser(
        "health",
        help="container health check: the role's programs RUNNING, its monitors healthy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    health.add_argument("--role", default=None, help="role to check (default: $DOMOS_ROLE)")
    health.add_argument(
        "--config",
        type=Path,
        default=None,
        help="supervisord configuration (default: $DOMOS_HOME/supervisord.conf)",
    )
    health.add_argument("--quiet", action="store_true", help="print only unhealthy findings")
    health.set_defaults(handler=health_command)


def rendered_files() -> dict[str, str]:
    """Repository-relative path -> content, for every file this module renders."""
    from runtime.observability.alerting import render_alertmanager_config
    from runtime.observability.dashboards import DASHBOARD_FILE, render_dashboard
    from runtime.observability.scrape import render_scrape_config

    return {
        "prometheus/prometheus.yml": render_scrape_config(),
        "prometheus/alertmanager.yml": render_alertmanager_config(),
        f"grafana/dashboards/{DASHBOARD_FILE}": render_dashboard(),
    }


def render_differences(root: Path) -> list[str]:
    problems = []
    for relative, content in rendered_files().items():
        path = root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
        elif path.read_text(encoding="utf-8") != content:
            problems.append(f"{relative}: differs from the catalogue and the panel list")
    return problems


def render_command(args: argparse.Namespace) -> int:
    root: Path = args.root
    if args.check:
        problems = render_differences(root)
        for problem in problems:
            print(f"{problem} (run `domos observability render`)")
        return 1 if problems else 0
    for relative, content in rendered_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return 0


def health_command(args: argparse.Namespace) -> int:
    from runtime.config import Env
    from runtime.errors import ConfigError
    from runtime.monitor.health import DEFAULT_RUN_DIR
    from runtime.observability.health import check_role

    env = Env(os.environ)
    role = args.role or env.text("DOMOS_ROLE")
    if role is None:
        raise ConfigError("DOMOS_ROLE", "is required (or --role)")
    config: Path = args.config or Path(env.text("DOMOS_HOME", ".") or ".") / "supervisord.conf"
    run_dir = Path(env.text("DOMOS_RUN_DIR", DEFAULT_RUN_DIR) or DEFAULT_RUN_DIR)
    findings = check_role(role, config, run_dir)
    for finding in findings:
        if not (args.quiet and finding.healthy):
            print(finding.line())
    return 0 if all(finding.healthy for finding in findings) else 1
