"""A timestamp field that writes what the domos DB layer writes.

On SQLite the domain tables hold fixed-width ISO-8601 UTC text (`2024-05-01T12:00:00.123456Z`,
runtime.db.types), so text order is time order; Django's own SQLite format
(`2024-05-01 12:00:00.123456`) would sort differently and break the monitors' range queries.
PostgreSQL needs nothing special (TIMESTAMPTZ).

Every instant a request brings (a filter's bound, the timeline's cursor) goes through
`utc_instant`: one with an offset at the edge of datetime's range (`0001-01-01T00:00+03:00`) has
no UTC form, and would otherwise fail as an OverflowError deep in a query or a template.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from runtime.db.types import format_sqlite_timestamp


def utc_instant(value: datetime) -> datetime:
    """`value` (naive: in UTC) as an aware UTC datetime; ValidationError when it, or its time
    in the community's zone (what pages show), falls outside datetime's range."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
        timezone.localtime(utc)
    except OverflowError as exc:
        raise ValidationError("Время вне допустимого диапазона.", code="out_of_range") from exc
    return utc


class UTCDateTimeField(models.DateTimeField):  # type: ignore[type-arg]
    def get_prep_value(self, value: Any) -> Any:
        # Called when a filter is built (the admin turns ValidationError into ?e=1), before
        # any SQL is compiled.
        value = super().get_prep_value(value)
        return utc_instant(value) if isinstance(value, datetime) else value

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor == "sqlite" and isinstance(value, datetime):
            return format_sqlite_timestamp(utc_instant(value))
        return super().get_db_prep_value(value, connection, prepared)
