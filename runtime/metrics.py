"""Prometheus metrics shared by the domos programs, and the /metrics endpoint.

Naming (DESIGN.md "Metrics"): prefix `domos_`, base units (seconds, bytes), counters end in
`_total`. The metric objects live here, registered once per process in the default registry, so
every module that imports them updates the same series. The DB layer keeps its pool gauges in
`runtime.db.metrics`; supervision keeps its own.

Every program calls `serve_metrics(settings.metrics_port, addr=settings.bind_host)` once:
prometheus_client's HTTP server runs in a daemon thread, so it serves sync (Flask, scripts) and
async (monitors, aiogram) programs alike and keeps answering while the event loop is busy.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

#: Tick durations range from a few milliseconds (nothing to do) to minutes (a big batch).
TICK_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Request latencies of the HTTP services (prometheus_client's defaults, plus 30 s for slow I/O).
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30)

TICK_OUTCOMES = ("success", "failure", "skipped")

#: Route label of requests that matched no route (every HTTP service), so random paths share one.
UNMATCHED_ROUTE = "<unmatched>"
#: Methods kept as labels; any other (clients may send arbitrary tokens) is counted as OTHER.
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

# `*_created` series double every counter and histogram for a timestamp nobody alerts on.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# --- monitors -------------------------------------------------------------------------------

MONITOR_TICKS = Counter(
    "domos_monitor_ticks_total",
    "Monitor ticks by outcome: success, failure, or skipped (a slot missed after an overrun).",
    ["monitor", "outcome"],
)
MONITOR_TICK_DURATION = Histogram(
    "domos_monitor_tick_duration_seconds",
    "Wall time of one monitor tick, successful or not.",
    ["monitor"],
    buckets=TICK_DURATION_BUCKETS,
)
MONITOR_ITEMS_PROCESSED = Counter(
    "domos_monitor_items_processed_total",
    "Items (rows, messages, payments …) processed by successful monitor ticks.",
    ["monitor"],
)
MONITOR_LAST_SUCCESS = Gauge(
    "domos_monitor_last_success_timestamp_seconds",
    "Unix time of the end of the last successful tick.",
    ["monitor"],
)
MONITOR_LAST_PROGRESS = Gauge(
    "domos_monitor_last_progress_timestamp_seconds",
    "Unix time of the last sign of work: a successful tick, or an item done inside a long tick.",
    ["monitor"],
)
MONITOR_UP = Gauge(
    "domos_monitor_up",
    "1 while the monitor's runner is running (ticking or standing by), 0 once it stopped.",
    ["monitor"],
)
MONITOR_LEADER = Gauge(
    "domos_monitor_leader",
    "1 while this instance may tick: it holds the singleton lock, or the monitor is claiming.",
    ["monitor"],
)
MONITOR_INTERVAL = Gauge(
    "domos_monitor_interval_seconds",
    "Configured tick interval; alerts compare the last success against a multiple of it.",
    ["monitor"],
)
MONITOR_CONSECUTIVE_FAILURES = Gauge(
    "domos_monitor_consecutive_failures",
    "Failed ticks since the last success (drives the backoff).",
    ["monitor"],
)

# --- schema -------------------------------------------------------------------------------

# Set by the process that checks (a monitor, the API, the bot; botapi's and web's before
# gunicorn forks), so under multiprocess mode the highest value any process wrote is the answer.
SCHEMA_MIGRATIONS_MISSING = Gauge(
    "domos_schema_migrations_missing",
    "Migrations of this program's code the database lacks, at its last check: above 0 the "
    "program waits and does no work (run `domos db upgrade`).",
    ["logical_db"],
    multiprocess_mode="max",
)
SCHEMA_MIGRATIONS_UNKNOWN = Gauge(
    "domos_schema_migrations_unknown",
    "Migrations applied to the database that this program's code does not know (a newer domos "
    "applied them: a code rollback); the program runs.",
    ["logical_db"],
    multiprocess_mode="max",
)

# --- HTTP services --------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "domos_http_requests_total",
    "HTTP requests served, by program, route template, method and status code.",
    ["program", "route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "domos_http_request_duration_seconds",
    "Time to serve an HTTP request, by program, route template and method.",
    ["program", "route", "method"],
    buckets=HTTP_DURATION_BUCKETS,
)


def start_at_zero(counter: Counter, label: str, values: tuple[str, ...]) -> None:
    """Export every child at 0 from the start: a series born at 1 by its first increment shows
    no increase() in Prometheus, so an alert on a rare event would miss its first occurrence."""
    for value in values:
        counter.labels(**{label: value})


def init_monitor_series(monitor: str, interval_s: float) -> None:
    """Create every series of `monitor` at zero, so dashboards and `rate()` see it from start."""
    for outcome in TICK_OUTCOMES:
        MONITOR_TICKS.labels(monitor=monitor, outcome=outcome)
    MONITOR_TICK_DURATION.labels(monitor=monitor)
    MONITOR_ITEMS_PROCESSED.labels(monitor=monitor)
    MONITOR_INTERVAL.labels(monitor=monitor).set(interval_s)
    MONITOR_CONSECUTIVE_FAILURES.labels(monitor=monitor).set(0)
    MONITOR_LEADER.labels(monitor=monitor).set(0)
    MONITOR_UP.labels(monitor=monitor).set(1)


def record_http_request(
    *, program: str, route: str, method: str, status: int | str, duration_s: float
) -> None:
    """Count one served request. `route` is the route template (`/tokens/{id}`), never the raw
    path, so ids do not explode the number of series."""
    counter, histogram = _http_series(program, route, method, str(status))
    counter.inc()
    histogram.observe(duration_s)


@functools.lru_cache(maxsize=4096)
def _http_series(program: str, route: str, method: str, status: str) -> tuple[Any, Any]:
    """The labelled children of one request kind, looked up once: `labels()` checks the names
    and takes a lock on every call. Routes are templates and methods a fixed set, so the kinds
    are few; the bound is only a guard."""
    method = method.upper()
    if method not in HTTP_METHODS:
        method = "OTHER"
    return (
        HTTP_REQUESTS.labels(program=program, route=route, method=method, status=status),
        HTTP_REQUEST_DURATION.labels(program=program, route=route, method=method),
    )


@dataclass
class RequestTracker:
    """The status the handler answered with; set it inside `track_http_request`."""

    status: int = 200


@contextmanager
def track_http_request(*, program: str, route: str, method: str) -> Iterator[RequestTracker]:
    """Time a request handled inside the block; set `tracker.status` before leaving it.

    An exception escaping the block is counted as status 500 and re-raised.
    """
    tracker = RequestTracker()
    started = time.perf_counter()
    try:
        yield tracker
    except BaseException:
        tracker.status = 500
        raise
    finally:
        record_http_request(
            program=program,
            route=route,
            method=method,
            status=tracker.status,
            duration_s=time.perf_counter() - started,
        )


def exposition_registry() -> CollectorRegistry:
    """The registry a /metrics view renders. Under gunicorn (PROMETHEUS_MULTIPROC_DIR set before
    prometheus_client was imported) every worker writes its own files; a fresh registry adds
    them up, whichever worker answers the scrape."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@dataclass(frozen=True)
class MetricsServer:
    """A running /metrics endpoint; `port` is the bound port (useful when asked for port 0)."""

    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(
    port: int | None, *, addr: str, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """Serve `/metrics` on `addr:port` from a daemon thread; no-op (None) when `port` is None.

    `addr` has no default: a program's metrics bind where the program binds (Settings.bind_host),
    never every interface of a laptop."""
    if port is None:
        return None
    server, thread = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    return MetricsServer(server=server, thread=thread)
