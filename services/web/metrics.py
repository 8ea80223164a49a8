"""Request metrics of the staff admin, and its /metrics view.

`RequestMetricsMiddleware` runs first in MIDDLEWARE, so it times everything the other middleware
and the view do. The route label is the resolved URL pattern (`/admin/domain/payment/
<path:object_id>/change/`), never the raw path; static files served by WhiteNoise (before URL
resolution) share `/static/<path>`, and requests that match nothing share `<unmatched>`, the
label the other services use, so random paths cannot create series.

gunicorn forks several workers: `domos web` sets PROMETHEUS_MULTIPROC_DIR before the first import
of prometheus_client, and `/metrics` adds up every worker's files, whichever worker answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime.metrics import UNMATCHED_ROUTE, exposition_registry, record_http_request

#: The `program` label: the supervisord program that serves this app.
PROGRAM = "web"
METRICS_PATH = "/metrics"


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        # STATIC_URL is "/static/" once Django has added the script prefix.
        self.static_prefix = "/" + str(settings.STATIC_URL).lstrip("/")

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        # Django turns view and middleware exceptions into 500 responses; one escaping anyway
        # (a bug in the outermost layers) is still counted, as a 500.
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            record_http_request(
                program=PROGRAM,
                route=self.route_label(request),
                method=request.method or "",
                status=status,
                duration_s=time.perf_counter() - started,
            )

    def route_label(self, request: HttpRequest) -> str:
        if request.path_info == METRICS_PATH:
            return METRICS_PATH
        match = request.resolver_match
        if match is not None:
            return "/" + match.route
        if request.path_info.startswith(self.static_prefix):
            return self.static_prefix + "<path>"
        return UNMATCHED_ROUTE


def metrics_view(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(exposition_registry()), content_type=CONTENT_TYPE_LATEST)


class MetricsEndpointMiddleware:
    """Answers /metrics before CommonMiddleware checks the Host header against ALLOWED_HOSTS.

    Prometheus scrapes the container by its service name (`web:8002`), which no operator lists
    in WEB_ALLOWED_HOSTS: Django answered its scrapes 400 in the compose stack. The host check
    protects URLs built from the Host header; the exposition builds none.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info == METRICS_PATH:
            return metrics_view(request)
        return self.get_response(request)
