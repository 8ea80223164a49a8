"""The YooKassa notification: trust nothing in the body.

The body only names an event and an object id. The object is fetched from the YooKassa API with
the shop's credentials; only what the API says is recorded, once per `<event>:<object id>` (the
unique key of provider_events), for payment_monitor to apply. The answer tells YooKassa whether to
retry: 200 when recorded (or already recorded, or not an event we act on), 503 when the API could
not be asked (retry later), 409 when the API does not (yet) confirm what the event claims, 400 for
a body that is not a notification or names an object the shop does not have.
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

    fetch = yookassa.get_refund if event.startswith("refund.") else yookassa.get_payment
    http_status, fetched = fetch(object_id)
    if http_status == 404:
        log.warning("webhook_unknown_object", event_type=event, object_id=object_id, ip=source_ip)
        return _answer(400, "rejected", f"YooKassa does not know object {object_id}")
    if http_status != 200 or fetched is None:
        log.warning(
            "webhook_fetch_failed", event_type=event, object_id=object_id, http_status=http_status
        )
        return _answer(503, "retry", "could not confirm the event with YooKassa; retry later")
    if fetched.get("id") != object_id or not status_confirms(event, fetched.get("status")):
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
