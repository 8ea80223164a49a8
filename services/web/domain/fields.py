"""A timestamp field that writes what the domos DB layer writes.

On SQLite the domain tables hold fixed-width ISO-8601 UTC text (`2024-05-01T12:00:00.123456Z`,
runtime.db.types), so text order is time order; Django's own SQLite format
(`2024-05-01 12:00:00.123456`) would sort differently and break the monitors' range queries.
PostgreSQL needs nothing special (TIMESTAMPTZ).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import models

from runtime.db.types import format_sqlite_timestamp


class UTCDateTimeField(models.DateTimeField):  # type: ignore[type-arg]
    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if connection.vendor == "sqlite" and isinstance(value, datetime):
            return format_sqlite_timestamp(
                value if value.tzinfo is not None else value.replace(tzinfo=UTC)
            )
        return super().get_db_prep_value(value, connection, prepared)
