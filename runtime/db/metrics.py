"""Prometheus metrics of the DB layer.

Pool gauges are collected at scrape time from every open database of the process (no background
thread, no stale values): domos_db_pool_size, domos_db_pool_available, domos_db_pool_waiting,
labelled by `pool` (the database's name) and `dialect`. Query errors are counted by domos error
kind in domos_db_query_errors_total{kind}.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import Protocol

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

QUERY_ERRORS = Counter(
    "domos_db_query_errors_total",
    "Database errors raised by the DB layer, by domos error kind.",
    ["kind"],
)


class PoolStatsSource(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dialect(self) -> str: ...

    def pool_gauges(self) -> tuple[int, int, int]:
        """(size, available, waiting) right now."""
        ...


_sources: weakref.WeakSet[PoolStatsSource] = weakref.WeakSet()
_register_lock = threading.Lock()
_registered = False


class _PoolCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["pool", "dialect"]
        size = GaugeMetricFamily(
            "domos_db_pool_size", "Open connections in the pool.", labels=labels
        )
        available = GaugeMetricFamily(
            "domos_db_pool_available", "Idle connections ready for use.", labels=labels
        )
        waiting = GaugeMetricFamily(
            "domos_db_pool_waiting", "Callers waiting for a connection.", labels=labels
        )
        for source in list(_sources):
            pool_size, pool_available, pool_waiting = source.pool_gauges()
            label_values = [source.name, source.dialect]
            size.add_metric(label_values, pool_size)
            available.add_metric(label_values, pool_available)
            waiting.add_metric(label_values, pool_waiting)
        yield size
        yield available
        yield waiting


def track_pool(source: PoolStatsSource) -> None:
    """Export `source`'s gauges until it is untracked or garbage collected."""
    global _registered
    with _register_lock:
        if not _registered:
            REGISTRY.register(_PoolCollector())
            _registered = True
    _sources.add(source)


def untrack_pool(source: PoolStatsSource) -> None:
    _sources.discard(source)


def count_query_error(kind: str) -> None:
    QUERY_ERRORS.labels(kind=kind).inc()
