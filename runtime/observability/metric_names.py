"""Which metric names exist: read from the code's prometheus_client definitions, and from PromQL.

The dashboard and the alert rules may only query series that some program exports. Definitions
are found statically (no import of every program): calls such as `Counter("domos_x_total", ...)`
or `GaugeMetricFamily("domos_y", ...)` whose first argument is a string literal. Each definition
yields the sample names prometheus_client actually exposes (`_total` for counters, `_bucket`,
`_sum` and `_count` for histograms).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

#: Sample-name suffixes exposed per metric type (prometheus_client's text exposition).
_SUFFIXES: dict[str, tuple[str, ...]] = {
    "Counter": ("_total",),
    "CounterMetricFamily": ("_total",),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "HistogramMetricFamily": ("_bucket", "_sum", "_count"),
    "Summary": ("", "_sum", "_count"),
    "SummaryMetricFamily": ("", "_sum", "_count"),
    "Info": ("_info",),
    "InfoMetricFamily": ("_info",),
    "Enum": ("",),
    "StateSetMetricFamily": ("",),
}

#: Series every Prometheus target has without any code of ours.
PROMETHEUS_BUILTINS = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

#: Series of the exporters beside the programs that the dashboard, the alert rules or the
#: runbooks use: postgres_exporter 0.11 (Debian bookworm's and the compose image's version, default
#: collectors) and Alertmanager 0.25's own delivery metrics. The integration tests check each
#: name against the real processes.
POSTGRES_EXPORTER_METRICS = frozenset(
    {
        "pg_up",
        "pg_settings_max_connections",
        "pg_stat_database_numbackends",
        "pg_stat_database_xact_commit",
        "pg_stat_database_xact_rollback",
        "pg_stat_database_deadlocks",
        "pg_locks_count",
        "pg_database_size_bytes",
        "pg_stat_activity_count",
        "pg_stat_activity_max_tx_duration",
    }
)
ALERTMANAGER_METRICS = frozenset(
    {
        "alertmanager_notifications_total",
        "alertmanager_notifications_failed_total",
        "alertmanager_alerts",
    }
)
#: Everything outside the code that may be queried.
EXTERNAL_METRICS = PROMETHEUS_BUILTINS | POSTGRES_EXPORTER_METRICS | ALERTMANAGER_METRICS

#: PromQL words that look like identifiers but name no metric.
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        "atan2",
    }
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _exposed(kind: str, name: str) -> Iterator[str]:
    base = name.removesuffix("_total") if kind in ("Counter", "CounterMetricFamily") else name
    for suffix in _SUFFIXES[kind]:
        yield base + suffix


def defined_in_source(source: str) -> set[str]:
    """Sample names exposed by the metric definitions in one Python module's source."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        kind = _call_name(node)
        if kind not in _SUFFIXES or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.update(_exposed(kind, first.value))
    return names


def defined_metrics(roots: Iterable[Path]) -> set[str]:
    """Sample names defined anywhere under `roots` (directories of Python packages)."""
    names: set[str] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            if "prometheus_client" in source:
                names |= defined_in_source(source)
    return names


def referenced_metrics(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    # Label matchers and ranges first, then grouping label lists: none of them name metrics.
    previous = None
    while previous != text:
        previous = text
        text = _BRACES.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group(1)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function call or an operator keyword
        if re.fullmatch(r"\d[\w.]*", word):
            continue
        names.add(word)
    return names
