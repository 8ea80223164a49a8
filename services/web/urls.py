from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from services.web.domain import views
from services.web.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="overview", permanent=False)),
    path("overview/", views.overview, name="overview"),
    path("healthz", views.healthz, name="healthz"),
    # Prometheus scrapes the web container here (like the API's /metrics on its own port).
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
]
