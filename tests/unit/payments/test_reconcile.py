"""payments.reconcile: the listing range, matching by metadata and amount, reading every page."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from payments.client import MAX_PAGES, Answer
from payments.keys import charge_key
from payments.reconcile import (
    best_match,
    charge_matcher,
    checkout_matcher,
    find_payment,
    listing_params,
)

COMMITTED = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
WINDOW = timedelta(hours=23)
KEY = charge_key(7, "2026-12-01", 2)


def charge(status: str = "succeeded", value: str = "990.00", attempt: str = "2") -> dict[str, Any]:
    return {
        "id": f"p-{status}-{attempt}",
        "status": status,
        "amount": {"value": value, "currency": "RUB"},
        "metadata": {"subscription_id": "7", "period": "2026-12-01", "attempt": attempt},
    }


class Pages:
    """A provider answering with the given pages, in order; records the queries."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.queries: list[dict[str, str]] = []

    async def list_payments(self, params: Mapping[str, str]) -> Answer:
        self.queries.append(dict(params))
        return self.answers.pop(0)


def find(pages: Pages, matcher: Any = None) -> Any:
    matcher = matcher or charge_matcher(KEY, 99000, "RUB")
    return asyncio.run(find_payment(pages, COMMITTED, WINDOW, matcher))


def test_the_range_covers_the_window_with_room_for_clock_skew() -> None:
    assert listing_params(COMMITTED, WINDOW) == {
        "created_at.gte": "2026-12-01T09:20:00.000Z",
        "created_at.lte": "2026-12-02T08:40:00.000Z",
        "limit": "100",
    }


def test_a_charge_matches_by_its_metadata_and_amount() -> None:
    matches = charge_matcher(KEY, 99000, "RUB")
    assert matches(charge())
    assert not matches(charge(attempt="1"))  # another attempt: another key
    assert not matches(charge(value="990.01"))
    assert not matches({**charge(), "amount": {"value": "990.00", "currency": "USD"}})
    assert not matches({**charge(), "metadata": {"payment_row": "7"}})


def test_a_checkout_matches_its_row_and_committed_request() -> None:
    metadata = {"payment_row": "5", "source": "api"}
    row = {
        "id": 5,
        "amount_minor": 99000,
        "currency": "RUB",
        "metadata": {"source": "api", "provider_request": {"metadata": metadata}},
    }
    found = {"amount": {"value": "990.00", "currency": "RUB"}, "metadata": metadata}
    assert checkout_matcher(row)(found)
    assert not checkout_matcher({**row, "id": 6})(found)
    assert not checkout_matcher(row)({**found, "metadata": {**metadata, "source": "bot"}})


def test_a_succeeded_payment_is_preferred() -> None:
    assert best_match([charge("canceled"), charge("succeeded"), charge("pending")]) == charge()
    assert best_match([]) is None


def test_every_page_is_read_before_nothing_is_concluded() -> None:
    pages = Pages(
        (200, {"type": "list", "items": [charge(attempt="1")], "next_cursor": "c1"}),
        (200, {"type": "list", "items": [charge("pending")], "next_cursor": "c2"}),
        (200, {"type": "list", "items": []}),
    )
    listing = find(pages)
    assert (listing.complete, listing.pages) == (True, 3)
    assert listing.found == charge("pending")
    assert [q.get("cursor") for q in pages.queries] == [None, "c1", "c2"]

    nothing = find(Pages((200, {"type": "list", "items": [charge(attempt="3")]})))
    assert (nothing.complete, nothing.found) == (True, None)


def test_a_failed_page_leaves_the_outcome_unknown() -> None:
    for answer in [(500, {"type": "error"}), (None, None), (200, {"type": "list"})]:
        pages = Pages((200, {"items": [], "next_cursor": "c1"}), answer)
        listing = find(pages)
        assert (listing.complete, listing.found) == (False, None)
        assert listing.error is not None
    # A found payment on an earlier page does not settle it either: a later page may hold more.
    pages = Pages((200, {"items": [charge()], "next_cursor": "c1"}), (503, None))
    assert find(pages).complete is False


def test_an_endless_range_is_not_read_to_its_end() -> None:
    pages = Pages(*[(200, {"items": [], "next_cursor": f"c{n}"}) for n in range(MAX_PAGES)])
    listing = find(pages)
    assert (listing.complete, listing.pages) == (False, MAX_PAGES)
