"""The Grafana dashboard, generated from a panel list.

Panels are declared here once; `domos observability render` writes grafana/dashboards/domos.json
and the tests check that the committed file matches and that every metric a panel queries is
defined in the code. Grafana's `$__rate_interval` is used for every rate, so panels stay right
whatever the scrape interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

DATASOURCE_UID = "domos-prometheus"
DASHBOARD_UID = "domos-overview"
DASHBOARD_FILE = "domos.json"

PanelKind = Literal["timeseries", "stat"]
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: PanelKind = "timeseries"
    description: str = ""
    #: Width in grid columns (24 per row).
    width: int = 8


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


ROWS: tuple[Row, ...] = (
    Row(
        "Programs",
        (
            Panel(
                "Programs running",
                (Query("domos_supervisor_process_up", "{{role}} {{program}}"),),
                description="1 while supervisord reports the program RUNNING.",
            ),
            Panel(
                "Program restarts (1 h)",
                (
                    Query(
                        "increase(domos_supervisor_process_restarts_total[1h])",
                        "{{role}} {{program}}",
                    ),
                ),
                description="Starts after the first, per program; a loop shows as a climb.",
            ),
            Panel(
                "Scrape targets up",
                (Query("up", "{{job}} {{instance}}"),),
                description="0: Prometheus cannot reach the program's /metrics.",
            ),
        ),
    ),
    Row(
        "Monitors",
        (
            Panel(
                "Ticks by outcome",
                (
                    Query(
                        f"sum by (monitor, outcome) (rate(domos_monitor_ticks_total[{RATE}]))",
                        "{{monitor}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Tick errors",
                (
                    Query(
                        "sum by (monitor) "
                        f'(rate(domos_monitor_ticks_total{{outcome="failure"}}[{RATE}]))',
                        "{{monitor}}",
                    ),
                    Query("domos_monitor_consecutive_failures", "{{monitor}} consecutive"),
                ),
                unit="short",
            ),
            Panel(
                "Tick duration p95",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (monitor, le) "
                        f"(rate(domos_monitor_tick_duration_seconds_bucket[{RATE}])))",
                        "{{monitor}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Time since last success",
                (
                    Query(
                        "time() - max by (monitor) (domos_monitor_last_success_timestamp_seconds)",
                        "{{monitor}}",
                    ),
                    Query(
                        "3 * max by (monitor) (domos_monitor_interval_seconds)",
                        "{{monitor}} alert threshold",
                    ),
                ),
                unit="s",
                description="The alert fires when the first line crosses the second.",
            ),
            Panel(
                "Items processed",
                (
                    Query(
                        f"sum by (monitor) (rate(domos_monitor_items_processed_total[{RATE}]))",
                        "{{monitor}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Leader",
                (Query("domos_monitor_leader", "{{monitor}} {{instance}}"),),
                description="1: this instance holds the singleton lock (or claims work).",
            ),
        ),
    ),
    Row(
        "Outbox",
        (
            Panel(
                "Outbox backlog",
                (
                    # Read from the database: replicas report the same rows, hence max.
                    Query(
                        'max by (status) (domos_outbox_backlog{status=~"queued|failed|sending"})',
                        "{{status}}",
                    ),
                ),
                description="Queued, waiting for a retry (failed) and in flight (sending).",
            ),
            Panel(
                "Oldest due message waiting",
                (Query("max(domos_outbox_oldest_due_age_seconds)", "oldest due"),),
                unit="s",
                description="Time past its send time; the lag alert fires above 5 min for 10 min.",
            ),
            Panel(
                "Outbox delivery by outcome",
                (
                    Query(
                        f"sum by (outcome) (rate(domos_notify_messages_total[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Dead letters and blocked users (1 h)",
                (
                    Query(
                        "sum by (outcome) (increase("
                        'domos_notify_messages_total{outcome=~"dead|blocked"}[1h]))',
                        "{{outcome}}",
                    ),
                ),
                width=12,
            ),
            Panel(
                "Dead letters stored",
                (Query('max(domos_outbox_backlog{status="dead"})', "dead letters"),),
                kind="stat",
                width=12,
                description="Outbox rows in status dead, waiting for the staff to look at them.",
            ),
        ),
    ),
    Row(
        "Payments",
        (
            Panel(
                "Payments finalized by status",
                (
                    Query(
                        f"sum by (status) (rate(domos_payments_finalized_total[{RATE}]))",
                        "{{status}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Renewal charges by outcome",
                (
                    Query(
                        f"sum by (outcome) (rate(domos_recurrent_charges_total[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Payment links requested by outcome",
                (
                    Query(
                        f"sum by (outcome) (rate(domos_bot_payments_requested_total[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Unsent payments by outcome (1 h)",
                (
                    Query(
                        "sum by (outcome) (increase(domos_unsent_payments_total[1h]))",
                        "{{outcome}}",
                    ),
                ),
                width=12,
                description="Payments whose create call never returned: found at the provider"
                " (recorded, or matched by a notification), sent again (retried), canceled"
                " uncalled (expired key, refused repeat), and paid_after_cancel, a refund to make"
                " by hand. Alerts fire on cancellations, on resends that keep failing and on"
                " any paid_after_cancel.",
            ),
            Panel(
                "Payment notifications by outcome",
                (
                    Query(
                        f"sum by (outcome) (rate(domos_provider_events_total[{RATE}]))",
                        "{{outcome}}",
                    ),
                ),
                unit="ops",
                width=12,
                description="YooKassa notifications payment_monitor handled: applied, ignored,"
                " retried, failed (each failure is in provider_events.last_error).",
            ),
        ),
    ),
    Row(
        "Database",
        (
            Panel(
                "Pool connections",
                (
                    Query("sum by (job) (domos_db_pool_size)", "{{job}} size"),
                    Query("sum by (job) (domos_db_pool_available)", "{{job}} available"),
                ),
            ),
            Panel(
                "Pool waiters",
                (Query("sum by (job) (domos_db_pool_waiting)", "{{job}}"),),
                description="Callers waiting for a connection; sustained > 0 means exhaustion.",
            ),
            Panel(
                "Query errors by kind",
                (
                    Query(
                        f"sum by (job, kind) (rate(domos_db_query_errors_total[{RATE}]))",
                        "{{job}} {{kind}}",
                    ),
                ),
                unit="ops",
            ),
        ),
    ),
    Row(
        "HTTP services",
        (
            Panel(
                "Requests by status",
                (
                    Query(
                        f"sum by (program, status) (rate(domos_http_requests_total[{RATE}]))",
                        "{{program}} {{status}}",
                    ),
                ),
                unit="reqps",
            ),
            Panel(
                "Latency p50 / p95",
                (
                    Query(
                        "histogram_quantile(0.5, sum by (program, le) "
                        f"(rate(domos_http_request_duration_seconds_bucket[{RATE}])))",
                        "{{program}} p50",
                    ),
                    Query(
                        "histogram_quantile(0.95, sum by (program, le) "
                        f"(rate(domos_http_request_duration_seconds_bucket[{RATE}])))",
                        "{{program}} p95",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Server error ratio",
                (
                    Query(
                        "sum by (program) "
                        f'(rate(domos_http_requests_total{{status=~"5.."}}[{RATE}]))'
                        " / sum by (program) "
                        f"(rate(domos_http_requests_total[{RATE}]))",
                        "{{program}}",
                    ),
                ),
                unit="percentunit",
            ),
        ),
    ),
)


def panels() -> tuple[Panel, ...]:
    return tuple(panel for row in ROWS for panel in row.panels)


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    datasource = {"type": "prometheus", "uid": DATASOURCE_UID}
    result: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": datasource,
        "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": datasource,
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": True,
            }
            for index, query in enumerate(panel.queries)
        ],
    }
    return result


def dashboard() -> dict[str, Any]:
    """The dashboard JSON model (Grafana's file provisioning format)."""
    items: list[dict[str, Any]] = []
    panel_id = 1
    y = 0
    for row in ROWS:
        items.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id += 1
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x = 0
                y += 8
            items.append(_panel_json(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
        y += 8
    return {
        "uid": DASHBOARD_UID,
        "title": "domos",
        "description": "Programs, monitors, outbox, payments, database pool and HTTP services.",
        "tags": ["domos"],
        "timezone": "browser",
        "editable": False,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": items,
    }


def render_dashboard() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(panel.title, query.expr) for panel in panels() for query in panel.queries]
