"""CSV export of the payments made in a date range, for staff who may view payments.

Streamed row by row (a year of payments never sits in memory), RFC 4180 quoting by the csv
module, a UTF-8 byte-order mark so spreadsheets read the Cyrillic, and a cell that a spreadsheet
would take for a formula (`=`, `+`, `-`, `@`, tab or carriage return first: OWASP's CSV
injection list) prefixed with `'`, since usernames and descriptions come from members.
The range is of calendar days in the community's time zone, both ends included.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone

from services.web.domain import models as m
from services.web.domain.fields import utc_instant

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"
#: Rows fetched per round trip (a server-side cursor on PostgreSQL).
CHUNK = 500
COLUMNS = (
    "id",
    "created_at",
    "paid_at",
    "status",
    "kind",
    "amount",
    "currency",
    "telegram_id",
    "username",
    "tariff",
    "provider_payment_id",
    "cancellation_reason",
    "description",
)


def safe_cell(value: Any) -> str:
    """The cell's text, neutralised if a spreadsheet would evaluate it."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _local(stamp: datetime | None) -> str:
    return "" if stamp is None else timezone.localtime(stamp).strftime("%Y-%m-%d %H:%M:%S")


def payment_row(payment: m.Payment) -> list[str]:
    return [
        safe_cell(cell)
        for cell in (
            payment.pk,
            _local(payment.created_at),
            _local(payment.paid_at),
            payment.status,
            payment.kind,
            f"{payment.amount_minor // 100}.{payment.amount_minor % 100:02d}",
            payment.currency,
            payment.user.telegram_id,
            payment.user.username,
            payment.tariff.code,
            payment.provider_payment_id,
            payment.cancellation_reason,
            payment.description,
        )
    ]


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[start of `first`, start of the day after `last`) in the community's time zone."""
    zone = timezone.get_current_timezone()
    start = datetime.combine(first, time.min, tzinfo=zone)
    end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def payments_between(start: datetime, end: datetime) -> Iterator[m.Payment]:
    rows = m.Payment.objects.filter(created_at__gte=start, created_at__lt=end)
    rows = rows.select_related("user", "tariff").order_by("created_at", "id")
    return rows.iterator(chunk_size=CHUNK)


class _Line:
    """A file-like object whose write returns the line: csv.writer formats, we stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[list[str]], *, delimiter: str = ",") -> Iterator[str]:
    writer = csv.writer(_Line(), delimiter=delimiter)
    zone = timezone.get_current_timezone_name()
    # Times are local: the header says in which zone.
    header = [f"{name} ({zone})" if name.endswith("_at") else name for name in COLUMNS]
    yield BOM + writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


class ExportForm(forms.Form):
    first = forms.DateField(label="С", widget=forms.DateInput(attrs={"type": "date"}))
    last = forms.DateField(
        label="По (включительно)", widget=forms.DateInput(attrs={"type": "date"})
    )
    delimiter = forms.ChoiceField(
        label="Разделитель",
        choices=[(",", "запятая (,)"), (";", "точка с запятой (; — Excel с русской локалью)")],
        initial=",",
        required=False,
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("first") and data.get("last"):
            if data["first"] > data["last"]:
                raise forms.ValidationError("Начало диапазона позже конца.")
            # The query's bounds, here and not once the download has begun: a day at the
            # calendar's edge has no next day or no UTC form, and a failure mid-stream would
            # leave a "successful" download cut after its header.
            try:
                start, end = day_bounds(data["first"], data["last"])
                data["bounds"] = (utc_instant(start), utc_instant(end))
            except (OverflowError, ValidationError):
                raise forms.ValidationError("Даты вне допустимого диапазона.") from None
        return data


def export_view(
    request: HttpRequest, *, payment_admin: admin.ModelAdmin[m.Payment]
) -> HttpResponseBase:
    """GET without dates: the form. GET with `first` and `last`: the CSV, streamed."""
    if not payment_admin.has_view_permission(request):
        raise PermissionDenied
    today = timezone.localdate()
    if "first" not in request.GET:
        form = ExportForm(initial={"first": today.replace(day=1), "last": today})
    else:
        form = ExportForm(request.GET)
        if form.is_valid():
            first, last = form.cleaned_data["first"], form.cleaned_data["last"]
            delimiter = form.cleaned_data["delimiter"] or ","
            payments = payments_between(*form.cleaned_data["bounds"])
            rows = (payment_row(payment) for payment in payments)
            response = StreamingHttpResponse(
                csv_lines(rows, delimiter=delimiter), content_type="text/csv; charset=utf-8"
            )
            response["Content-Disposition"] = (
                f'attachment; filename="payments_{first.isoformat()}_{last.isoformat()}.csv"'
            )
            return response
    context = {
        **admin.site.each_context(request),
        "title": "Выгрузка платежей в CSV",
        "opts": m.Payment._meta,
        "form": form,
    }
    return render(request, "domain/payment_export.html", context)
