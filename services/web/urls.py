from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from services.web.domain import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="overview", permanent=False)),
    path("overview/", views.overview, name="overview"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
