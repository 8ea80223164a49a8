"""The overview page (members by state, revenue this month, monitor health) and a health probe.

Each section of the overview shows only to staff who may view the tables it sums (a login with
no rights sees a page with nothing on it): counts and revenue are the same data as the lists.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db import connections
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from runtime.monitor.health import evaluate_health, read_health
from services.web.domain import models as m
from services.web.domain.permissions import may_view


def month_start(now: datetime) -> datetime:
    """Midnight of the first day of `now`'s month in the community's time zone."""
    local = timezone.localtime(now)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def members_by_state() -> dict[str, int]:
    counts = {
        row["status"]: row["n"]
        for row in m.Subscription.objects.values("status").annotate(n=Count("user", distinct=True))
    }
    with_any = m.Subscription.objects.values("user").distinct().count()
    counts["без подписки"] = m.Member.objects.count() - with_any
    return counts


def revenue_since(start: datetime) -> list[dict[str, Any]]:
    rows = (
        m.Payment.objects.filter(status="succeeded", paid_at__gte=start)
        .values("currency")
        .annotate(total=Sum("amount_minor"), payments=Count("id"))
        .order_by("currency")
    )
    return [
        {"currency": r["currency"], "total": r["total"] / 100, "payments": r["payments"]}
        for r in rows
    ]


def monitor_health(run_dir: Path, now: float) -> list[dict[str, Any]]:
    """One row per health file the monitors wrote (runtime.monitor.health)."""
    result = []
    for path in sorted(run_dir.glob("monitor-*.json")):
        state = read_health(path)
        if state is None:
            continue
        verdict = evaluate_health(state, now=now, max_age_s=3 * state.interval_s)
        result.append(
            {
                "monitor": state.monitor,
                "role": state.role,
                "healthy": verdict.healthy,
                "reason": verdict.reason,
                "last_success_at": (
                    datetime.fromtimestamp(state.last_success_at, tz=UTC)
                    if state.last_success_at
                    else None
                ),
                "consecutive_failures": state.consecutive_failures,
            }
        )
    return result


@staff_member_required
def overview(request: HttpRequest) -> HttpResponse:
    def shown(*models: type[Any]) -> bool:
        return all(may_view(request, model) for model in models)

    now = timezone.now()
    start = month_start(now)
    context: dict[str, Any] = {
        # The admin's header, titles and navigation, as on every admin page.
        **admin.site.each_context(request),
        "title": "Обзор",
        "month_start": start,
    }
    # None marks a section hidden for want of the right, {} / [] an empty one.
    context["members"] = members_by_state() if shown(m.Member, m.Subscription) else None
    context["revenue"] = revenue_since(start) if shown(m.Payment) else None
    context["outbox"] = (
        {
            row["status"]: row["n"]
            for row in m.OutboxMessage.objects.values("status").annotate(n=Count("id"))
        }
        if shown(m.OutboxMessage)
        else None
    )
    # Monitor health is the heartbeats table's, whether read from it or from the health files.
    watches_monitors = shown(m.MonitorHeartbeat)
    context["monitors"] = (
        monitor_health(Path(settings.DOMOS_RUN_DIR), time.time()) if watches_monitors else None
    )
    context["heartbeats"] = (
        list(m.MonitorHeartbeat.objects.order_by("monitor")) if watches_monitors else None
    )
    return render(request, "domain/overview.html", context)


def healthz(request: HttpRequest) -> HttpResponse:
    """Unauthenticated liveness for supervisord/docker: the Django and main databases answer."""
    try:
        for alias in ("default", "main"):
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means "not healthy", reported as such
        return JsonResponse({"ok": False, "error": type(exc).__name__}, status=503)
    return JsonResponse({"ok": True})
