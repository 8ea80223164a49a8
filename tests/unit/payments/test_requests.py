"""payments.requests: what the API, the bot and recurrent_payments send, against what
payment_monitor reads back from a provider payment (payments.decisions)."""

from __future__ import annotations

from typing import Any

import pytest

from payments.decisions import (
    PROVIDER_REQUEST,
    PaymentReference,
    payment_reference,
    reference_mismatch,
)
from payments.keys import charge_key
from payments.requests import charge_request, checkout_request

#: The rows the two checkout producers commit (their own metadata as they store it).
PRODUCERS = {
    "api": {"source": "api", "telegram_id": 700, "tariff_id": 3},
    "bot": {"source": "bot", "telegram_id": 700, "tariff_id": 3},
}


def row(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 17,
        "amount_minor": 99000,
        "currency": "RUB",
        "description": "Подписка",
        "save_payment_method": True,
        "metadata": metadata,
    }


@pytest.mark.parametrize("producer", sorted(PRODUCERS))
def test_a_checkouts_metadata_holds_what_every_reader_looks_for(producer: str) -> None:
    body = checkout_request(row(PRODUCERS[producer]), "https://t.me/bot")
    assert body["metadata"] == {
        "payment_row": "17",
        "telegram_id": "700",
        "source": producer,
        "tariff_id": "3",
    }
    # What YooKassa echoes back leads payment_monitor to the row, and the row accepts it...
    echoed = {"amount": {"value": "990.00", "currency": "RUB"}, "metadata": body["metadata"]}
    assert payment_reference(echoed) == PaymentReference(payment_row=17)
    committed = row({**PRODUCERS[producer], PROVIDER_REQUEST: body})
    assert reference_mismatch(committed, echoed) is None
    # ...and so does a row from before requests were stored (checked by its member).
    assert reference_mismatch(row(PRODUCERS[producer]), echoed) is None


def test_the_stored_request_never_nests_in_the_metadata_sent() -> None:
    stored = row({**PRODUCERS["bot"], PROVIDER_REQUEST: {"amount": {}}})
    assert PROVIDER_REQUEST not in checkout_request(stored, "https://t.me/bot")["metadata"]


def test_a_charge_names_its_attempt_and_never_a_row() -> None:
    charge = {
        "description": "Продление",
        "metadata": {"subscription_id": 5, "period": "p", "attempt": 2},
    }
    body = charge_request(charge, 99000, "RUB", "pm-1")
    assert body == {
        "amount": {"value": "990.00", "currency": "RUB"},
        "capture": True,
        "payment_method_id": "pm-1",
        "description": "Продление",
        "metadata": {"subscription_id": "5", "period": "p", "attempt": "2"},
    }
    assert payment_reference(body) == PaymentReference(charge_key=charge_key(5, "p", 2))
