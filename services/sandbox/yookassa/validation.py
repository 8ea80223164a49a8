"""Request body checks for payments and refunds, with YooKassa's `parameter` names."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from services.sandbox.yookassa.errors import bad_value, invalid, missing

_VALUE = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
CONFIRMATION_TYPES = ("redirect", "embedded", "external", "qr", "mobile_application")
MAX_DESCRIPTION = 128
MAX_METADATA_KEYS = 16


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


def amount(body: dict[str, Any], parameter: str = "amount") -> tuple[Decimal, str]:
    data = body.get("amount")
    if data is None:
        raise missing(parameter)
    if not isinstance(data, dict):
        raise bad_value(parameter)
    raw = data.get("value")
    if raw is None:
        raise missing(f"{parameter}.value")
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise bad_value(f"{parameter}.value")
    text = str(raw)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise bad_value(f"{parameter}.value") from None
    if not _VALUE.match(text if isinstance(raw, str) else money(value)) or value <= 0:
        raise bad_value(f"{parameter}.value")
    currency = data.get("currency")
    if currency is None:
        raise missing(f"{parameter}.currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise bad_value(f"{parameter}.currency")
    return value, currency


def optional_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise bad_value(name)
    return value


def description(body: dict[str, Any]) -> str | None:
    value = body.get("description")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise bad_value("description")
    return value


def metadata(body: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) > MAX_METADATA_KEYS:
        raise bad_value("metadata")
    for key, item in value.items():
        if len(key) > 32 or (item is not None and len(str(item)) > 512):
            raise bad_value(f"metadata.{key}")
    return {key: None if item is None else str(item) for key, item in value.items()}


def confirmation(body: dict[str, Any], required: bool) -> dict[str, Any] | None:
    data = body.get("confirmation")
    if data is None:
        if required:
            raise missing("confirmation")
        return None
    if not isinstance(data, dict):
        raise bad_value("confirmation")
    kind = data.get("type")
    if kind is None:
        raise missing("confirmation.type")
    if kind not in CONFIRMATION_TYPES:
        raise bad_value("confirmation.type")
    if kind == "redirect" and not isinstance(data.get("return_url"), str):
        raise missing("confirmation.return_url")
    return data


def string_id(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise bad_value(name)
    return value


def json_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    return body
