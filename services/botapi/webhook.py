"""The YooKassa notification: trust nothing in the body.

The body only names an event and an object id. The object is fetched from the YooKassa API with
the shop's credentials; only what the API says is recorded, once per `<event>:<object id>` (the
unique key of provider_events), for payment_monitor to apply. The answer tells YooKassa whether to
retry: 200 when recorded (or already recorded, or not an event we act on), 503 when the API could
not be asked (retry later), 409 when the API does not (yet) confirm what the event claims, 400 for
a body that is not a notification or names an object the shop does not have.

The provider GET is the expensive step (a sync worker waits on it, up to
BOTAPI_PROVIDER_TIMEOUT_S), so it is made only for an object that concerns one of our payment
rows: a payment whose provider id we recorded, a row of ours still waiting for its create answer
(named by the metadata the request carried), or a refund of a payment we know. Anything else is
acknowledged as not ours after one indexed lookup: a flood of invented ids costs no provider call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from runtime.db import Database

log = structlog.get_logger("botapi.webhook")

PROVIDER = "yookassa"
#: The object status each event asserts; waiting_for_capture may already have moved on.
EVENT_STATUS: dict[str, str] = {
    "payment.succeeded": "succeeded",
    "payment.waiting_for_capture": "waiting_for_capture",
    "payment.canceled": "canceled",
    "refund.succeeded": "succeeded",
}
_LATER_STATUSES = {"waiting_for_capture": ("succeeded", "canceled")}
_OBJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: The shape of YooKassa's event names (payment.succeeded, payment_method.active, deal.closed):
#: anything else is refused before it is logged, so a spoofed POST cannot write a megabyte
#: into the logs under "ignored".
_EVENT = re.compile(r"^[a-z_]{1,40}\.[a-z_]{1,40}$")


class Fetcher(Protocol):
    def get_payment(self, payment_id: str) -> tuple[int | None, dict[str, Any] | None]: ...
    def get_refund(self, refund_id: str) -> tuple[int | None, dict[str, Any] | None]: ...


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]


def _answer(status: int, outcome: str, message: str | None = None, **extra: Any) -> Outcome:
    body: dict[str, Any] = {"status": outcome, **extra}
    if message is not None:
        body["message"] = message
    return Outcome(status, body)


def parse_notification(body: Any) -> tuple[str, str] | str:
    """(event, object id) of a notification body, or the reason it is not one."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if body.get("type") != "notification":
        return "type must be 'notification'"
    event = body.get("event")
    if not isinstance(event, str) or not event:
        return "event is required"
    if not _EVENT.match(event):
        return "event must be a YooKassa event name, such as payment.succeeded"
    obj = body.get("object")
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(object_id, str) or not _OBJECT_ID.match(object_id):
        return "object.id is required (letters, digits, '-' and '_')"
    return event, object_id


#: (provider, provider_payment_id) is the table's unique index.
_KNOWN_PAYMENT = "SELECT 1 FROM payments WHERE provider = ? AND provider_payment_id = ?"
#: A row of ours whose create answer was lost: no provider id yet, named by its request metadata.
_AWAITING_ANSWER = (
    "SELECT 1 FROM payments WHERE provider_payment_id IS NULL AND processed_at IS NULL"
    " AND (id = ? OR subscription_id = ?) LIMIT 1"
)


def _row_hint(metadata: Any, key: str) -> int | None:
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return int(value) if isinstance(value, str) and value.isdigit() and len(value) < 19 else None


def concerns_our_payments(db: Database, refund: bool, object_id: str, obj: dict[str, Any]) -> bool:
    """Whether the (untrusted) notification names something of ours, worth a provider GET.

    The body only chooses which of our rows to look at; the fetched object still decides.
    """
    if refund:
        payment_id = obj.get("payment_id")
        if not isinstance(payment_id, str) or not _OBJECT_ID.match(payment_id):
            return False
        return db.fetchval(_KNOWN_PAYMENT, (PROVIDER, payment_id)) is not None
    if db.fetchval(_KNOWN_PAYMENT, (PROVIDER, object_id)) is not None:
        return True
    metadata = obj.get("metadata")
    row, subscription = _row_hint(metadata, "payment_row"), _row_hint(metadata, "subscription_id")
    if row is None and subscription is None:
        return False
    return db.fetchval(_AWAITING_ANSWER, (row, subscription)) is not None


def status_confirms(event: str, fetched_status: Any) -> bool:
    expected = EVENT_STATUS[event]
    return fetched_status == expected or fetched_status in _LATER_STATUSES.get(expected, ())


def handle_notification(
    body: Any, source_ip: str | None, yookassa: Fetcher, db: Database
) -> Outcome:
    parsed = parse_notification(body)
    if isinstance(parsed, str):
        return _answer(400, "rejected", parsed)
    event, object_id = parsed
    if event not in EVENT_STATUS:
        log.info("webhook_event_ignored", event_type=event, object_id=object_id)
        return _answer(200, "ignored", f"event {event!r} is not acted upon")

    refund = event.startswith("refund.")
    if not concerns_our_payments(db, refund, object_id, body["object"]):
        log.info("webhook_not_ours", event_type=event, object_id=object_id, ip=source_ip)
        return _answer(200, "ignored", f"object {object_id} is not a payment of this service")
    fetch = yookassa.get_refund if refund else yookassa.get_payment
    http_status, fetched = fetch(object_id)
    if http_status == 404:
        log.warning("webhook_unknown_object", event_type=event, object_id=object_id, ip=source_ip)
        return _answer(400, "rejected", f"YooKassa does not know object {object_id}")
    if http_status != 200 or fetched is None:
        log.warning(
            "webhook_fetch_failed", event_type=event, object_id=object_id, http_status=http_status
        )
        return _answer(503, "retry", "could not confirm the event with YooKassa; retry later")
    confirmed = fetched.get("id") == object_id and status_confirms(event, fetched.get("status"))
    if refund and fetched.get("payment_id") != body["object"].get("payment_id"):
        confirmed = False  # the refund the provider has is not of the payment we looked up
    if not confirmed:
        log.warning(
            "webhook_not_confirmed",
            event_type=event,
            object_id=object_id,
            fetched_status=fetched.get("status"),
            ip=source_ip,
        )
        return _answer(409, "unconfirmed", "YooKassa does not confirm this event (yet)")

    event_key = f"{event}:{object_id}"
    event_id = db.fetchval(
        "INSERT INTO provider_events (provider, event_key, event_type, object_id, payload,"
        " source_ip) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (provider, event_key) DO NOTHING RETURNING id",
        (PROVIDER, event_key, event, object_id, fetched, source_ip),
    )
    if event_id is None:
        log.info("webhook_duplicate", event_key=event_key)
        return _answer(200, "duplicate")
    log.info("webhook_recorded", event_key=event_key, event_id=event_id, ip=source_ip)
    return _answer(200, "recorded", event_id=event_id)
