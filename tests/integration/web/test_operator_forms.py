"""The operator-edited forms (tariffs, events) refuse what the schema's CHECKs refuse, as form
errors instead of a 500 IntegrityError, on both backends; and the validators on the models do
not drift from the CHECKs: every value the database refuses, the model's validators refuse."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from runtime.errors import CheckViolation

TARIFF = {
    "code": "form-tariff",
    "title": "Месяц",
    "description": "",
    "price_minor": "150000",
    "currency": "RUB",
    "period_days": "30",
    "is_active": "on",
}
EVENT = {
    "title": "Встреча",
    "description": "",
    "location": "",
    "url": "",
    "starts_at_0": "01.05.2026",
    "starts_at_1": "18:00:00",
    "ends_at_0": "",
    "ends_at_1": "",
    "capacity": "20",
    "status": "published",
}


@pytest.mark.parametrize(
    ("url", "form", "field", "value"),
    [
        ("/admin/domain/tariff/add/", TARIFF, "price_minor", "0"),
        ("/admin/domain/tariff/add/", TARIFF, "price_minor", "-5"),
        ("/admin/domain/tariff/add/", TARIFF, "currency", "rub"),
        ("/admin/domain/tariff/add/", TARIFF, "currency", "RUBX"),
        ("/admin/domain/tariff/add/", TARIFF, "period_days", "0"),
        ("/admin/domain/event/add/", EVENT, "capacity", "0"),
        ("/admin/domain/event/add/", EVENT, "capacity", "-1"),
    ],
)
def test_a_value_the_schema_refuses_is_a_form_error(
    client: Any, url: str, form: dict[str, str], field: str, value: str
) -> None:
    response = client.post(url, {**form, field: value})
    assert response.status_code == 200  # the form again, not a 500
    errors = response.context["adminform"].form.errors
    assert list(errors) == [field], errors


def test_valid_forms_save(client: Any, domain_db: Any) -> None:
    assert client.post("/admin/domain/tariff/add/", TARIFF).status_code == 302
    assert client.post("/admin/domain/event/add/", {**EVENT, "capacity": "1"}).status_code == 302
    assert domain_db.fetchval("SELECT period_days FROM tariffs WHERE code = 'form-tariff'") == 30


#: A tariff every CHECK takes: each edge below changes one of its columns.
EDGE_TARIFF = {"code": "edge", "title": "t", "price_minor": 1, "currency": "RUB", "period_days": 1}
#: Edges of every CHECKed column an operator edits: (table, column, values, a valid row).
EDGES: list[tuple[str, str, tuple[Any, ...], dict[str, Any]]] = [
    (
        "tariffs",
        "price_minor",
        (-1, 0, 1),
        EDGE_TARIFF,
    ),
    (
        "tariffs",
        "currency",
        ("RUB", "rub", "Rub", "RU", "RUBX", ""),
        EDGE_TARIFF,
    ),
    (
        "tariffs",
        "period_days",
        (-1, 0, 1),
        EDGE_TARIFF,
    ),
    (
        "events",
        "capacity",
        (None, -1, 0, 1),
        {"title": "e", "starts_at": "2026-05-01T15:00:00.000000Z", "capacity": None},
    ),
]
MODELS = {"tariffs": "Tariff", "events": "Event"}


@pytest.mark.parametrize(
    ("table", "column", "value", "row"),
    [(table, column, value, row) for table, column, values, row in EDGES for value in values],
)
def test_the_models_validators_refuse_what_the_checks_refuse(
    domain_db: Any, table: str, column: str, value: Any, row: dict[str, Any]
) -> None:
    from services.web.domain import models as m

    field = getattr(m, MODELS[table])._meta.get_field(column)
    try:
        field.clean(value, None)  # blank, type and validators, as the admin's form asks
        model_ok = True
    except ValidationError:
        model_ok = False
    values = {**row, column: value}
    columns = ", ".join(values)
    marks = ", ".join(itertools.repeat("?", len(values)))
    try:
        new = domain_db.fetchval(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING id",
            tuple(values.values()),
        )
    except CheckViolation:
        database_ok = False
    else:
        database_ok = True
        domain_db.execute(f"DELETE FROM {table} WHERE id = ?", (new,))
    assert database_ok or not model_ok, f"{table}.{column}={value!r}: the model lets it through"


@pytest.mark.parametrize("days", ["3661", "3000000", "99999999999"])
def test_a_tariff_period_payments_could_never_apply_is_refused(client: Any, days: str) -> None:
    """period_days=3000000 saved on PostgreSQL (99999999999 on SQLite), and payment_monitor's
    period arithmetic overflowed for every payment of the tariff: charged, never applied."""
    response = client.post(
        "/admin/domain/tariff/add/", {**TARIFF, "code": "long", "period_days": days}
    )
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["period_days"]


def test_the_longest_period_still_applies(client: Any, domain_db: Any) -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from monitors.decisions.periods import period_after
    from services.web.domain.models.main import MAX_PERIOD_DAYS

    form = {**TARIFF, "code": "decade", "period_days": str(MAX_PERIOD_DAYS)}
    assert client.post("/admin/domain/tariff/add/", form).status_code == 302
    days = domain_db.fetchval("SELECT period_days FROM tariffs WHERE code = 'decade'")
    # Renewed back to back for a century, the period end is still a datetime.
    end = datetime(2026, 12, 5, tzinfo=UTC)
    for _ in range(10):
        end = period_after(end, days=days, tz=ZoneInfo("Europe/Moscow")).end
    assert end.year > 2120
