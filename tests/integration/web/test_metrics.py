"""Request metrics of the staff admin, through Django's test client, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.integration.web.test_admin import seeded  # noqa: F401  (fixture)

PAYMENT_CHANGE = "/admin/domain/payment/<path:object_id>/change/"


def requests(route: str, method: str = "GET", status: int = 200) -> float:
    labels = {"program": "web", "route": route, "method": method, "status": str(status)}
    return REGISTRY.get_sample_value("domos_http_requests_total", labels) or 0.0


def observed(route: str, method: str = "GET") -> float:
    labels = {"program": "web", "route": route, "method": method}
    return REGISTRY.get_sample_value("domos_http_request_duration_seconds_count", labels) or 0.0


def web_routes() -> Iterator[str]:
    for family in REGISTRY.collect():
        if family.name == "domos_http_requests":
            for sample in family.samples:
                if sample.labels["program"] == "web":
                    yield sample.labels["route"]


def test_requests_are_counted_by_route_template(client: Any, seeded: dict[str, int]) -> None:  # noqa: F811
    change_before = requests(PAYMENT_CHANGE)
    observed_before = observed(PAYMENT_CHANGE)
    health_before = requests("/healthz", "HEAD")
    unmatched_before = requests("<unmatched>", status=404)
    static_before = requests("/static/<path>")

    # Two different objects, one series: the label is the URL pattern, not the path.
    assert client.get(f"/admin/domain/payment/{seeded['paid']}/change/").status_code == 200
    assert client.get("/admin/domain/payment/999999/change/").status_code == 302
    assert client.get(f"/admin/domain/payment/{seeded['paid']}/change/").status_code == 200
    assert client.head("/healthz").status_code == 200
    probe = uuid.uuid4().hex
    assert client.get(f"/{probe}/wp-login.php").status_code == 404
    static = client.get("/static/admin/css/base.css")
    static.close()  # WhiteNoise streams the file
    assert static.status_code == 200

    assert requests(PAYMENT_CHANGE) - change_before == 2
    assert requests(PAYMENT_CHANGE, status=302) >= 1  # the missing object redirects
    assert observed(PAYMENT_CHANGE) - observed_before == 3
    assert requests("/healthz", "HEAD") - health_before == 1
    assert requests("<unmatched>", status=404) - unmatched_before == 1
    assert requests("/static/<path>") - static_before == 1
    assert not any(probe in route or str(seeded["paid"]) in route for route in web_routes())


def test_metrics_endpoint_exposes_the_web_series(client: Any) -> None:
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    health = 'method="GET",program="web",route="/healthz"'
    assert f'domos_http_requests_total{{{health},status="200"}}' in body
    assert f'domos_http_request_duration_seconds_bucket{{le="0.005",{health}}}' in body


def test_metrics_answer_prometheus_under_the_containers_service_name(client: Any) -> None:
    """Prometheus in compose scrapes `web:8002`, a host no operator lists in ALLOWED_HOSTS."""
    assert client.get("/admin/login/", HTTP_HOST="web:8002").status_code == 400
    response = client.get("/metrics", HTTP_HOST="web:8002")
    assert response.status_code == 200
    assert "domos_http_requests_total" in response.content.decode()


def test_an_escaping_exception_is_counted_as_500(web_backend: Any) -> None:
    from django.test import RequestFactory

    from services.web.metrics import RequestMetricsMiddleware

    def broken(request: Any) -> Any:
        raise LookupError("a bug outside Django's exception handling")

    before = requests("<unmatched>", "POST", 500)
    with pytest.raises(LookupError):
        RequestMetricsMiddleware(broken)(RequestFactory().post("/anything"))
    assert requests("<unmatched>", "POST", 500) - before == 1
