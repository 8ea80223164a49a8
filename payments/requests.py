"""The POST /v3/payments bodies: a member's checkout (API, bot) and a saved-card charge.

A checkout's metadata carries everything any reader looks for: `payment_row` (payment_monitor
finds a row whose create answer was lost), `telegram_id` (it checks the member of a row from
before requests were stored), and the row's own `source` and `tariff_id` (operators).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from payments.amounts import amount
from payments.decisions import PROVIDER_REQUEST


def _as_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    # YooKassa keeps metadata values as strings; the committed request must be what it echoes.
    return {key: str(value) for key, value in values.items() if key != PROVIDER_REQUEST}


def checkout_request(row: Mapping[str, Any], return_url: str) -> dict[str, Any]:
    """The body of a committed payment row paid on YooKassa's page."""
    return {
        "amount": amount(row["amount_minor"], row["currency"]),
        "capture": True,
        "confirmation": {"type": "redirect", "return_url": return_url},
        "description": row["description"],
        "save_payment_method": bool(row["save_payment_method"]),
        "metadata": {"payment_row": str(row["id"]), **_as_metadata(row["metadata"] or {})},
    }


def charge_request(
    row: Mapping[str, Any], amount_minor: int, currency: str, provider_method_id: str
) -> dict[str, Any]:
    """The body of a recurrent charge of a saved card; its metadata names the attempt
    (subscription_id, period, attempt), never a `payment_row`."""
    return {
        "amount": amount(amount_minor, currency),
        "capture": True,
        "payment_method_id": provider_method_id,
        "description": row["description"],
        "metadata": _as_metadata(row["metadata"] or {}),
    }
