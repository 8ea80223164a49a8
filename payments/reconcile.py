"""A payment whose create outcome is unknown once its Idempotence-Key has left the window.

Past the window (PAYMENT_KEY_WINDOW_H, payments.decisions.key_expired) a key is never sent
again: YooKassa may have forgotten it, and a repeat would then be a second payment beside one
an earlier call made. What the earlier calls made is found instead by listing the shop's
payments (`GET /v3/payments`) created while the key could have been sent, and matching them by
the metadata our request carried and the amount:

- found, final or open: it is the payment; the caller follows it as if the create had answered;
- none found in the whole range (every page read): no call ever reached the provider, so the
  attempt is closed as not sent and a new one, with a new key, may follow;
- the listing failed (5xx, timeout, a page that is no list): the outcome stays unknown, the
  caller fails its tick and makes no new attempt.

One rule for both producers of keys: recurrent_payments' charge attempts and payment_monitor's
checkout payments (stage 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from payments.amounts import amount_minor
from payments.client import PAGE_SIZE, Answer, read_every_page
from payments.decisions import payment_reference, reference_mismatch

#: Our clock and the provider's may differ: the range is widened by this much on both sides.
CLOCK_SKEW = timedelta(minutes=10)
#: A payment found in several statuses (it cannot be, under one key) is taken in this order.
_PREFERENCE = ("succeeded", "waiting_for_capture", "pending", "canceled")


class PaymentLister(Protocol):
    async def list_payments(self, params: Mapping[str, str]) -> Answer: ...


@dataclass(frozen=True)
class Listing:
    """What listing learned: `complete` False when it failed (`error` says why)."""

    complete: bool
    found: dict[str, Any] | None = None
    error: str | None = None
    pages: int = 0


def provider_time(moment: datetime) -> str:
    """YooKassa's timestamp form: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def listing_params(committed_at: datetime, key_window: timedelta) -> dict[str, str]:
    """The filters of one page: payments created from the commit (the earliest a call could
    go out) to the end of the key window (the latest), widened by CLOCK_SKEW."""
    return {
        "created_at.gte": provider_time(committed_at - CLOCK_SKEW),
        "created_at.lte": provider_time(committed_at + key_window + CLOCK_SKEW),
        "limit": str(PAGE_SIZE),
    }


def _same_amount(item: Mapping[str, Any], minor: int, currency: str) -> bool:
    amount = item.get("amount")
    found = amount.get("currency") if isinstance(amount, Mapping) else None
    return amount_minor(amount) == minor and found == currency


def charge_matcher(key: str, minor: int, currency: str) -> Callable[[Mapping[str, Any]], bool]:
    """A recurrent charge: its metadata (subscription_id, period, attempt) derives its key."""

    def matches(item: Mapping[str, Any]) -> bool:
        reference = payment_reference(item)
        return (
            reference is not None
            and reference.charge_key == key
            and _same_amount(item, minor, currency)
        )

    return matches


def checkout_matcher(row: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bool]:
    """A checkout payment: metadata `payment_row`, the amount and the committed request agree."""

    def matches(item: Mapping[str, Any]) -> bool:
        reference = payment_reference(item)
        return (
            reference is not None
            and reference.payment_row == row["id"]
            and reference_mismatch(row, item) is None
        )

    return matches


def best_match(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    def rank(item: dict[str, Any]) -> int:
        status = item.get("status")
        return _PREFERENCE.index(status) if status in _PREFERENCE else len(_PREFERENCE)

    return min(items, key=rank) if items else None


async def find_payment(
    client: PaymentLister,
    committed_at: datetime,
    key_window: timedelta,
    matches: Callable[[Mapping[str, Any]], bool],
) -> Listing:
    """Read every page of the range; the payment our calls made, if any."""
    read = await read_every_page(
        client.list_payments, listing_params(committed_at, key_window), "GET /v3/payments"
    )
    if not read.complete:
        return Listing(False, error=read.error, pages=read.pages)
    return Listing(
        True, best_match([item for item in read.items if matches(item)]), pages=read.pages
    )
