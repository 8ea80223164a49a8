"""Amounts as YooKassa writes them: a decimal string of the major unit ("1499.00")."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any


def amount_value(minor: int) -> str:
    """149900 -> "1499.00"."""
    return f"{minor // 100}.{minor % 100:02d}"


def amount(minor: int, currency: str) -> dict[str, str]:
    """The `amount` object of a request."""
    return {"value": amount_value(minor), "currency": currency}


def amount_minor(amount: Any) -> int | None:
    """The minor units of a provider `amount` object; None when it is not a whole number of them."""
    value = amount.get("value") if isinstance(amount, Mapping) else None
    try:
        minor = Decimal(str(value)) * 100
    except InvalidOperation:
        return None
    if not minor.is_finite() or minor != minor.to_integral_value():
        return None
    return int(minor)
