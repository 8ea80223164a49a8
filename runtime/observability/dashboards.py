"""The Grafana dashboard, generated from a panel list.

Panels are declared here once; `domos observability render` writes grafana/dashboards/domos.json
and the tests check that the committed file matches and that every metric a panel queries is
defined in the code (or exported by postgres_exporter, or Prometheus' own `ALERTS`). Grafana's
`$__rate_interval` is used for every rate, so panels stay right whatever the scrape interval.

Template variables narrow the panels to a role, a program and a monitor (each "All" by default,
which Grafana sends as `.*`, so series without the label still show); `expand()` turns a panel's
query into what Grafana sends with every variable on "All", for evaluating it elsewhere.

Over 500 lines on purpose: it is one idea, the dashboard's panel list, read top to bottom as the
dashboard reads; split by row it would scatter the layout the list order gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

DATASOURCE_UID = "domos-prometheus"
DASHBOARD_UID = "domos-overview"
DASHBOARD_FILE = "domos.json"

PanelKind = Literal["timeseries", "stat", "table"]
RATE = "$__rate_interval"
#: What Grafana substitutes for a variable set to "All" (the variables' `allValue`).
ALL = ".*"

#: Label matchers of the template variables, for the panels' selectors.
ROLE = 'role=~"$role"'
PROGRAM = f'{ROLE}, program=~"$program"'
MONITOR = f'{ROLE}, monitor=~"$monitor"'
#: A program's own scrape job is named after it: pool and database series carry `job`.
JOB = f'{ROLE}, job=~"$program"'
#: postgres_exporter reports every database of the server; Grafana hides the templates.
DATABASES = 'datname!~"template0|template1|"'


@dataclass(frozen=True)
class Variable:
    name: str
    #: `label_values(selector, label)`: the choices are the label's values on these series.
    selector: str
    label: str


VARIABLES: tuple[Variable, ...] = (
    Variable("role", "domos_supervisor_process_up", "role"),
    Variable("program", f"domos_supervisor_process_up{{{ROLE}}}", "program"),
    Variable("monitor", f"domos_monitor_leader{{{ROLE}}}", "monitor"),
)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    #: One value per series now (tables of current state) instead of a range.
    instant: bool = False


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
        "Alerts",
        (
            Panel(
                "Firing alerts",
                (Query(f'ALERTS{{alertstate="firing", {ROLE}}}', instant=True),),
                kind="table",
                width=24,
                description="What Prometheus fires now (Alertmanager posts it to the operators'"
                " chat); each alert's runbook is docs/runbooks/<alertname>.md.",
            ),
        ),
    ),
    Row(
        "Programs",
        (
            Panel(
                "Programs running",
                (Query(f"domos_supervisor_process_up{{{PROGRAM}}}", "{{role}} {{program}}"),),
                description="1 while supervisord reports the program RUNNING.",
            ),
            Panel(
                "Program restarts (1 h)",
                (
                    Query(
                        f"increase(domos_supervisor_process_restarts_total{{{PROGRAM}}}[1h])",
                        "{{role}} {{program}}",
                    ),
                ),
                description="Starts after the first, per program; a loop shows as a climb.",
            ),
            Panel(
                "Scrape targets up",
                (Query(f"up{{{ROLE}}}", "{{job}} {{instance}}"),),
                description="0: Prometheus cannot reach the program's /metrics.",
            ),
            Panel(
                "Age of the last good backup",
                (
                    Query(
                        "time() - max by (kind) (domos_backup_last_success_timestamp_seconds)",
                        "{{kind}}",
                    ),
                ),
                unit="s",
                kind="stat",
                width=24,
                description="Since the last backup of each kind that passed its check; the"
                " schedule runs every 6 hours. Past two intervals: DomosBackupStale.",
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
                        "sum by (monitor, outcome) "
                        f"(rate(domos_monitor_ticks_total{{{MONITOR}}}[{RATE}]))",
                        "{{monitor}} {{outcome}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Tick errors",
                (
                    Query(
                        "sum by (monitor) (rate(domos_monitor_ticks_total"
                        f'{{{MONITOR}, outcome="failure"}}[{RATE}]))',
                        "{{monitor}}",
                    ),
                    Query(
                        f"domos_monitor_consecutive_failures{{{MONITOR}}}",
                        "{{monitor}} consecutive",
                    ),
                ),
                unit="short",
            ),
            Panel(
                "Tick duration p95",
                (
                    Query(
                        "histogram_quantile(0.95, sum by (monitor, le) "
                        f"(rate(domos_monitor_tick_duration_seconds_bucket{{{MONITOR}}}[{RATE}])))",
                        "{{monitor}}",
                    ),
                ),
                unit="s",
            ),
            Panel(
                "Time since last success",
                (
                    Query(
                        "time() - max by (monitor) "
                        f"(domos_monitor_last_success_timestamp_seconds{{{MONITOR}}})",
                        "{{monitor}}",
                    ),
                    Query(
                        f"3 * max by (monitor) (domos_monitor_interval_seconds{{{MONITOR}}})",
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
                        "sum by (monitor) "
                        f"(rate(domos_monitor_items_processed_total{{{MONITOR}}}[{RATE}]))",
                        "{{monitor}}",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Leader",
                (Query(f"domos_monitor_leader{{{MONITOR}}}", "{{monitor}} {{instance}}"),),
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
                " (recorded, matched by a notification, or reconciled by listing once the key"
                " left its window), sent again (retried), canceled uncalled (expired key and"
                " nothing listed, refused repeat), listing_failed, and paid_after_cancel, a"
                " refund to make by hand. Alerts fire on cancellations, on resends that keep"
                " failing and on any paid_after_cancel.",
            ),
            Panel(
                "Refunds and charges past their key window (1 h)",
                (
                    Query(
                        "sum by (kind) (increase(domos_refunds_total[1h]))",
                        "refund {{kind}}",
                    ),
                    Query(
                        "sum by (outcome) (increase(domos_charge_reconciliations_total[1h]))",
                        "charge {{outcome}}",
                    ),
                ),
                width=12,
                description="Refunds YooKassa confirmed: full ones end the period they paid"
                " for, partial ones are recorded and alert (DomosPartialRefund). Renewal"
                " charges still unanswered when their key left its window, looked up by"
                " listing: found, not_sent (a new attempt follows) or failed.",
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
            Panel(
                "Access to the paid chats (1 h)",
                (
                    Query(
                        "sum by (decision) (increase(domos_bot_join_requests_total[1h]))",
                        "join request {{decision}}",
                    ),
                    Query(
                        "sum by (outcome) (increase(domos_bot_strangers_total[1h]))",
                        "stranger {{outcome}}",
                    ),
                    Query(
                        "sum by (action, outcome) (increase(domos_moderation_actions_total[1h]))",
                        "{{action}} {{outcome}}",
                    ),
                ),
                width=24,
                description="Who the bot let in (join requests approved for staff and live"
                " subscriptions), strangers it removed from a paid chat (not_removed and"
                " unchecked alert: DomosStrangerInPaidChat), and ban_monitor's bans and unbans"
                " (failed bans alert: DomosRemovalsFailing).",
            ),
        ),
    ),
    Row(
        "Database",
        (
            Panel(
                "Pool connections",
                (
                    Query(f"sum by (job) (domos_db_pool_size{{{JOB}}})", "{{job}} size"),
                    Query(f"sum by (job) (domos_db_pool_available{{{JOB}}})", "{{job}} available"),
                ),
            ),
            Panel(
                "Pool waiters",
                (Query(f"sum by (job) (domos_db_pool_waiting{{{JOB}}})", "{{job}}"),),
                description="Callers waiting for a connection; sustained > 0 means exhaustion.",
            ),
            Panel(
                "Query errors by kind",
                (
                    Query(
                        f"sum by (job, kind) (rate(domos_db_query_errors_total{{{JOB}}}[{RATE}]))",
                        "{{job}} {{kind}}",
                    ),
                ),
                unit="ops",
            ),
        ),
    ),
    Row(
        "PostgreSQL",
        (
            Panel(
                "PostgreSQL up",
                (Query("pg_up", "{{instance}}"),),
                kind="stat",
                width=4,
                description="1 while postgres_exporter can query the server.",
            ),
            Panel(
                "Connections",
                (
                    Query(
                        f"sum by (datname) (pg_stat_database_numbackends{{{DATABASES}}})",
                        "{{datname}}",
                    ),
                    Query("max(pg_settings_max_connections)", "max_connections"),
                ),
                width=10,
                description="Backends per database against the server's max_connections (every"
                " program's pool counts: DB_POOL_MAX_SIZE per process).",
            ),
            Panel(
                "Locks by mode",
                (Query(f"sum by (mode) (pg_locks_count{{{DATABASES}}})", "{{mode}}"),),
                width=10,
                description="Locks held or awaited, by mode; a climb of exclusive locks with"
                " waiting pools is contention.",
            ),
            Panel(
                "Transactions",
                (
                    Query(
                        "sum by (datname) "
                        f"(rate(pg_stat_database_xact_commit{{{DATABASES}}}[{RATE}]))",
                        "{{datname}} commits",
                    ),
                    Query(
                        "sum by (datname) "
                        f"(rate(pg_stat_database_xact_rollback{{{DATABASES}}}[{RATE}]))",
                        "{{datname}} rollbacks",
                    ),
                ),
                unit="ops",
            ),
            Panel(
                "Database size",
                (Query(f"pg_database_size_bytes{{{DATABASES}}}", "{{datname}}"),),
                unit="bytes",
            ),
            Panel(
                "Longest transaction",
                (
                    Query(
                        f"max by (datname) (pg_stat_activity_max_tx_duration{{{DATABASES}}})",
                        "{{datname}}",
                    ),
                ),
                unit="s",
                description="Age of the oldest open transaction: long ones hold locks and"
                " keep vacuum from cleaning up.",
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
                        "sum by (program, status) "
                        f"(rate(domos_http_requests_total{{{PROGRAM}}}[{RATE}]))",
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
                        f"(rate(domos_http_request_duration_seconds_bucket{{{PROGRAM}}}[{RATE}])))",
                        "{{program}} p50",
                    ),
                    Query(
                        "histogram_quantile(0.95, sum by (program, le) "
                        f"(rate(domos_http_request_duration_seconds_bucket{{{PROGRAM}}}[{RATE}])))",
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
                        f'(rate(domos_http_requests_total{{{PROGRAM}, status=~"5.."}}[{RATE}]))'
                        " / sum by (program) "
                        f"(rate(domos_http_requests_total{{{PROGRAM}}}[{RATE}]))",
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
        "targets": [_target(query, index, datasource) for index, query in enumerate(panel.queries)],
    }
    if panel.kind == "table":
        # One row per alert: the labels as columns, without the time and value columns.
        result["options"] = {"showHeader": True}
        result["transformations"] = [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}},
            }
        ]
    return result


def _target(query: Query, index: int, datasource: dict[str, str]) -> dict[str, Any]:
    target: dict[str, Any] = {
        "refId": chr(ord("A") + index),
        "datasource": datasource,
        "expr": query.expr,
        "legendFormat": query.legend,
    }
    if query.instant:
        target.update({"instant": True, "range": False, "format": "table"})
    else:
        target["range"] = True
    return target


def _variable_json(variable: Variable) -> dict[str, Any]:
    definition = f"label_values({variable.selector}, {variable.label})"
    return {
        "name": variable.name,
        "label": variable.name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
        "definition": definition,
        "query": {"query": definition, "refId": f"{variable.name}-values"},
        # On dashboard load and on time range change: programs come and go.
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ALL,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


def expand(expr: str, rate_interval: str = "30s") -> str:
    """The query as Grafana sends it with every variable on "All"."""
    expanded = expr.replace(RATE, rate_interval)
    # Longest names first, so that no variable's name is replaced inside another's.
    for variable in sorted(VARIABLES, key=lambda v: -len(v.name)):
        expanded = expanded.replace(f"${variable.name}", ALL)
    assert "$" not in expanded, expanded
    return expanded


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
        "description": "Firing alerts, programs, monitors, outbox, payments, database pools,"
        " HTTP services and PostgreSQL.",
        "tags": ["domos"],
        "timezone": "browser",
        "editable": False,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [_variable_json(variable) for variable in VARIABLES]},
        "annotations": {"list": []},
        "panels": items,
    }


def render_dashboard() -> str:
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(panel.title, query.expr) for panel in panels() for query in panel.queries]
