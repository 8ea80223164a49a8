"""`GET /v3/payments` and `GET /v3/refunds` as YooKassa documents them
(developers/using-api/lists).

Filters `created_at.gte/gt/lte/lt` and (payments) `captured_at.gte/gt/lte/lt` (ISO 8601 with a
zone), `status`, `payment_method` (the method's type, e.g. bank_card), (refunds) `payment_id`;
`limit` 1-100 (default 10); newest first; cursor pagination: an answer has `next_cursor` when
more items follow, and the next page is asked for with `cursor=<next_cursor>` and the same
filters. Unknown parameters are ignored; a bad value is 400 `invalid_request` naming the
parameter.
"""

from __future__ import annotations

import base64
import binascii
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.sandbox.clock import iso
from services.sandbox.yookassa.errors import bad_value

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
STATUSES = frozenset({"pending", "waiting_for_capture", "succeeded", "canceled"})
_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}
_TIME_FIELDS = ("created_at", "captured_at")


@dataclass(frozen=True)
class Bound:
    field: str
    test: Callable[[str, str], bool]
    #: The bound in the sandbox's own timestamp form (fixed width: compares as text).
    at: str


@dataclass(frozen=True)
class ListQuery:
    bounds: tuple[Bound, ...]
    status: str | None
    method_type: str | None
    payment_id: str | None
    limit: int
    #: The id of the last item of the previous page.
    after: str | None


def _timestamp(parameter: str, value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise bad_value(parameter) from None
    if moment.tzinfo is None:
        raise bad_value(parameter)
    return iso(moment.astimezone(UTC).timestamp())


def encode_cursor(payment_id: str) -> str:
    return base64.urlsafe_b64encode(payment_id.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise bad_value("cursor") from None


def parse_query(query: Mapping[str, str]) -> ListQuery:
    bounds = []
    for field in _TIME_FIELDS:
        for name, test in _OPERATORS.items():
            parameter = f"{field}.{name}"
            if parameter in query:
                bounds.append(Bound(field, test, _timestamp(parameter, query[parameter])))
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise bad_value("status")
    try:
        limit = int(query.get("limit", str(DEFAULT_LIMIT)))
    except ValueError:
        raise bad_value("limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_value("limit")
    cursor = query.get("cursor")
    return ListQuery(
        bounds=tuple(bounds),
        status=status,
        method_type=query.get("payment_method"),
        payment_id=query.get("payment_id"),
        limit=limit,
        after=_decode_cursor(cursor) if cursor else None,
    )


def _matches(item: Mapping[str, Any], query: ListQuery) -> bool:
    """An item as the API answers it (its timestamps in the sandbox's fixed-width form)."""
    if query.status is not None and item["status"] != query.status:
        return False
    method_type = (item.get("payment_method") or {}).get("type")
    if query.method_type is not None and method_type != query.method_type:
        return False
    if query.payment_id is not None and item.get("payment_id") != query.payment_id:
        return False
    for bound in query.bounds:
        stamp = item.get(bound.field)
        if stamp is None or not bound.test(stamp, bound.at):
            return False
    return True


def page(newest_first: Iterable[Mapping[str, Any]], query: ListQuery) -> dict[str, Any]:
    """One page of the list answer, from the items as the API answers them."""
    matching = [item for item in newest_first if _matches(item, query)]
    start = 0
    if query.after is not None:
        ids = [item["id"] for item in matching]
        if query.after not in ids:
            raise bad_value("cursor")
        start = ids.index(query.after) + 1
    items = matching[start : start + query.limit]
    body: dict[str, Any] = {"type": "list", "items": [dict(item) for item in items]}
    if start + query.limit < len(matching):
        body["next_cursor"] = encode_cursor(items[-1]["id"])
    return body
