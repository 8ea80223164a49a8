"""runtime.metrics: naming, HTTP helpers, the /metrics endpoint."""

from __future__ import annotations

import urllib.request
import uuid

import pytest
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from runtime import metrics


def all_metrics() -> list[Counter | Gauge | Histogram]:
    found = [
        value for value in vars(metrics).values() if isinstance(value, Counter | Gauge | Histogram)
    ]
    assert len(found) >= 10
    return found


def test_names_follow_the_conventions() -> None:
    for metric in all_metrics():
        for family in metric.collect():
            assert family.name.startswith("domos_"), family.name
            if family.type == "counter":
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
            if family.type == "histogram":
                assert family.name.endswith("_seconds"), family.name
            assert family.documentation, family.name


def test_record_http_request() -> None:
    program = f"svc_{uuid.uuid4().hex[:6]}"
    metrics.record_http_request(
        program=program, route="/tokens/{id}", method="get", status=404, duration_s=0.02
    )
    labels = {"program": program, "route": "/tokens/{id}", "method": "GET"}
    assert REGISTRY.get_sample_value("domos_http_requests_total", {**labels, "status": "404"}) == 1
    assert REGISTRY.get_sample_value("domos_http_request_duration_seconds_count", labels) == 1
    assert REGISTRY.get_sample_value(
        "domos_http_request_duration_seconds_sum", labels
    ) == pytest.approx(0.02)


def test_unknown_methods_share_one_label() -> None:
    # Clients choose the method token; only the standard ones become series of their own.
    program = f"svc_{uuid.uuid4().hex[:6]}"
    for method in ("patch", "FOO", "X" * 20):
        metrics.record_http_request(
            program=program, route="/x", method=method, status=405, duration_s=0.001
        )
    base = {"program": program, "route": "/x", "status": "405"}
    assert REGISTRY.get_sample_value("domos_http_requests_total", {**base, "method": "PATCH"}) == 1
    assert REGISTRY.get_sample_value("domos_http_requests_total", {**base, "method": "OTHER"}) == 2
    assert REGISTRY.get_sample_value("domos_http_requests_total", {**base, "method": "FOO"}) is None


def test_track_http_request_counts_escaping_errors_as_500() -> None:
    program = f"svc_{uuid.uuid4().hex[:6]}"
    with metrics.track_http_request(program=program, route="/send", method="POST") as tracker:
        tracker.status = 201
    with (
        pytest.raises(KeyError),
        metrics.track_http_request(program=program, route="/send", method="POST"),
    ):
        raise KeyError("x")
    base = {"program": program, "route": "/send", "method": "POST"}
    assert REGISTRY.get_sample_value("domos_http_requests_total", {**base, "status": "201"}) == 1
    assert REGISTRY.get_sample_value("domos_http_requests_total", {**base, "status": "500"}) == 1


def test_serve_metrics_is_a_no_op_without_a_port() -> None:
    assert metrics.serve_metrics(None, addr="127.0.0.1") is None


def test_serve_metrics_exposes_monitor_series_over_http() -> None:
    name = f"m_{uuid.uuid4().hex[:6]}"
    metrics.init_monitor_series(name, interval_s=15.0)
    metrics.MONITOR_TICKS.labels(monitor=name, outcome="success").inc(2)
    server = metrics.serve_metrics(0, addr="127.0.0.1")
    assert server is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.close()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    key = ("domos_monitor_ticks_total", (("monitor", name), ("outcome", "success")))
    assert samples[key] == 2
    assert samples[("domos_monitor_ticks_total", (("monitor", name), ("outcome", "failure")))] == 0
    assert samples[("domos_monitor_interval_seconds", (("monitor", name),))] == 15
    assert samples[("domos_monitor_up", (("monitor", name),))] == 1
    # No `<counter>_created` timestamps beside the counters (metric names may contain "created").
    assert not [sample for sample in samples if sample[0].endswith("_created")]
