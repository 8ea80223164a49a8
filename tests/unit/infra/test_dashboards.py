"""grafana/: the committed dashboard is the generated one, and every query's metric exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from runtime.cli import main
from runtime.observability.dashboards import (
    ALL,
    DASHBOARD_FILE,
    DATASOURCE_UID,
    ROWS,
    VARIABLES,
    dashboard,
    expand,
    panel_queries,
    panels,
)
from runtime.observability.metric_names import (
    EXTERNAL_METRICS,
    defined_metrics,
    referenced_metrics,
)


@pytest.fixture(scope="module")
def defined(repo: Path) -> set[str]:
    return defined_metrics([repo / "runtime", repo / "monitors", repo / "services"])


def test_committed_files_are_the_rendered_ones(repo: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["observability", "render", "--check", "--root", str(repo)])
    assert code == 0, capsys.readouterr().out


def test_render_check_reports_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["observability", "render", "--root", str(tmp_path)]) == 0
    assert main(["observability", "render", "--check", "--root", str(tmp_path)]) == 0
    path = tmp_path / "grafana/dashboards" / DASHBOARD_FILE
    path.write_text(path.read_text().replace("domos_monitor_ticks_total", "domos_gone_total"))
    assert main(["observability", "render", "--check", "--root", str(tmp_path)]) == 1
    assert "grafana/dashboards/domos.json: differs" in capsys.readouterr().out


def test_every_panel_queries_only_metrics_defined_in_the_code(defined: set[str]):
    assert len(defined) > 30
    unknown = {
        (title, name)
        for title, expr in panel_queries()
        for name in referenced_metrics(expr)
        if name not in defined | EXTERNAL_METRICS
    }
    assert not unknown


def test_every_alert_rule_uses_only_metrics_defined_in_the_code(repo: Path, defined: set[str]):
    rules = yaml.safe_load((repo / "prometheus/alerts.yml").read_text())
    unknown = set()
    count = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            count += 1
            for name in referenced_metrics(rule["expr"]):
                if name not in defined | EXTERNAL_METRICS:
                    unknown.add((rule["alert"], name))
    assert count >= 10
    assert not unknown


def test_the_dashboard_covers_what_the_operator_watches():
    titles = {row.title for row in ROWS}
    assert titles == {
        "Alerts",
        "Programs",
        "Monitors",
        "Outbox",
        "Payments",
        "Database",
        "HTTP services",
        "PostgreSQL",
    }
    exprs = " ".join(expr for _, expr in panel_queries())
    for metric in (
        "domos_supervisor_process_up",
        "domos_supervisor_process_restarts_total",
        "domos_monitor_ticks_total",
        "domos_monitor_tick_duration_seconds_bucket",
        "domos_monitor_last_success_timestamp_seconds",
        "domos_notify_messages_total",
        "domos_outbox_backlog",
        "domos_outbox_oldest_due_age_seconds",
        "domos_payments_finalized_total",
        "domos_bot_strangers_total",
        "domos_backup_last_success_timestamp_seconds",
        "domos_moderation_actions_total",
        "domos_db_pool_waiting",
        "domos_http_request_duration_seconds_bucket",
        "domos_http_requests_total",
        "ALERTS",
        "pg_stat_database_numbackends",
        "pg_locks_count",
        "pg_stat_database_xact_commit",
        "pg_database_size_bytes",
    ):
        assert metric in exprs, metric


def test_the_firing_alerts_are_a_table_at_the_top():
    model = dashboard()
    first = model["panels"][1]
    assert first["title"] == "Firing alerts"
    assert first["type"] == "table"
    assert first["gridPos"] == {"h": 8, "w": 24, "x": 0, "y": 1}
    (target,) = first["targets"]
    assert target["expr"].startswith('ALERTS{alertstate="firing"')
    assert target["instant"] is True
    assert target["format"] == "table"


def test_template_variables_role_program_monitor_narrow_the_panels(defined: set[str]):
    model = dashboard()
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert list(variables) == ["role", "program", "monitor"]
    for variable in VARIABLES:
        json_variable = variables[variable.name]
        assert json_variable["includeAll"] is True
        assert json_variable["allValue"] == ALL
        assert json_variable["datasource"]["uid"] == DATASOURCE_UID
        assert json_variable["query"]["query"] == (
            f"label_values({variable.selector}, {variable.label})"
        )
        assert referenced_metrics(variable.selector) <= defined
    # program and monitor choices follow the chosen role.
    assert "$role" in variables["program"]["definition"]
    assert "$role" in variables["monitor"]["definition"]
    used = {name for _, expr in panel_queries() for name in re.findall(r"\$(\w+)", expr)}
    assert used == {"role", "program", "monitor", "__rate_interval"}
    narrowed = {
        panel.title: {v.name for v in VARIABLES if f"${v.name}" in query.expr}
        for panel in panels()
        for query in panel.queries
    }
    assert narrowed["Programs running"] == {"role", "program"}
    assert narrowed["Leader"] == {"role", "monitor"}
    assert narrowed["Pool waiters"] == {"role", "program"}
    assert narrowed["Requests by status"] == {"role", "program"}


def test_expand_gives_what_grafana_sends_on_all():
    assert expand('sum(rate(x{role=~"$role", program=~"$program"}[$__rate_interval]))') == (
        'sum(rate(x{role=~".*", program=~".*"}[30s]))'
    )
    with pytest.raises(AssertionError):
        expand('x{a=~"$unknown"}')


def test_http_panels_show_every_service_by_program():
    # api, web and botapi all export domos_http_*: no panel may narrow to some of them (beyond
    # the program the viewer picks).
    http = [expr for _, expr in panel_queries() if "domos_http_" in expr]
    assert len(http) >= 4
    for expr in http:
        assert "program=" not in expr.replace('program=~"$program"', ""), expr
        assert "program!" not in expr, expr
        assert "by (program" in expr, expr


def test_panels_use_the_provisioned_datasource_and_do_not_overlap(repo: Path):
    provisioned = yaml.safe_load(
        (repo / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert provisioned["datasources"][0]["uid"] == DATASOURCE_UID
    model = dashboard()
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, panel["title"]
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == DATASOURCE_UID
            assert panel["targets"]


def test_committed_dashboard_is_valid_json_with_a_stable_uid(repo: Path):
    model = json.loads((repo / "grafana/dashboards" / DASHBOARD_FILE).read_text())
    assert model["uid"] == "domos-overview"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('rate(x_total{a="b", c=~"d|e"}[5m])', {"x_total"}),
        (
            "histogram_quantile(0.95, sum by (monitor, le) (rate(h_bucket[$__rate_interval])))",
            {"h_bucket"},
        ),
        ("time() - max by (monitor) (g) > 3 * i", {"g", "i"}),
        ("a and on (job, instance) b == 1 unless ignoring (x) c", {"a", "b", "c"}),
        ("sum(rate(a[5m] offset 1h)) by (job) / sum without (x) (b)", {"a", "b"}),
        ('count({__name__="hidden"}) + vector(0)', set()),
        ('x{label="rate(y[5m])"}', {"x"}),
        ("1e3 * m:recorded:rate5m", {"m:recorded:rate5m"}),
    ],
)
def test_referenced_metrics(expr: str, names: set[str]):
    assert referenced_metrics(expr) == names


def test_defined_names_follow_prometheus_client_exposition():
    from runtime.observability.metric_names import defined_in_source

    source = """
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
A = Counter("a_total", "doc")
B = Counter("b", "doc")
C = prometheus_client.Histogram("c_seconds", "doc")
D = GaugeMetricFamily("d", "doc", labels=["x"])
E = Gauge(name_from_variable, "doc")
"""
    assert defined_in_source(source) == {
        "a_total",
        "b_total",
        "c_seconds_bucket",
        "c_seconds_sum",
        "c_seconds_count",
        "d",
    }
