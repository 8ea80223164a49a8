"""`POST /send`: enqueue a notification into the outbox, idempotently by `dedupe_key`.

201 with `created: true` when this call queued it; 200 with `created: false` when the same
notification (same key, chat and text) was queued before, whatever its state now; 409 when the
key was used for a different notification; 400 when the text cannot be sent at all (with
parse_mode HTML, a tag longer than one Telegram message: monitors.decisions.text_split, the one
home of that rule, is asked). notifymonitor delivers the outbox.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from monitors.decisions.text_split import TextNotSplittable, split_message
from runtime.db import Database, Transaction
from runtime.errors import DomosError
from services.common.text import Text, storable_json

INT64_MAX = 2**63 - 1


class SendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chat_id: Annotated[int, Field(ge=-INT64_MAX, le=INT64_MAX)]
    text: Annotated[Text, Field(min_length=1, max_length=32768)]
    dedupe_key: Annotated[Text, Field(min_length=1, max_length=200)]
    kind: Annotated[Text, Field(min_length=1, max_length=64)] = "notification"
    parse_mode: Literal["HTML", "MarkdownV2", "Markdown"] | None = None
    reply_markup: Annotated[dict[str, Any], AfterValidator(storable_json)] | None = None
    disable_web_page_preview: bool = False
    #: Lower is sent first.
    priority: Annotated[int, Field(ge=0, le=1000)] = 100


class SendConflict(DomosError):
    """The dedupe key was used for a different notification."""

    def __init__(self, outbox_id: int) -> None:
        super().__init__(f"dedupe_key already used for another notification (outbox {outbox_id})")
        self.outbox_id = outbox_id


class UnsendableText(DomosError):
    """The text cannot be split into messages Telegram accepts; nothing was queued."""


def check_sendable(request: SendRequest) -> None:
    """Raise UnsendableText when notifymonitor could not split the text into parts."""
    try:
        split_message(request.text, parse_mode=request.parse_mode)
    except TextNotSplittable as exc:
        raise UnsendableText(str(exc)) from exc


def enqueue(db: Database | Transaction, request: SendRequest) -> tuple[dict[str, Any], bool]:
    """The outbox row of this notification; True when this call created it. Given a
    transaction, inside it (the admin's broadcasts write many rows in one). UnsendableText
    (nothing written) when the text cannot be sent."""
    check_sendable(request)
    created = db.fetchone(
        "INSERT INTO outbox (dedupe_key, chat_id, user_id, kind, text, parse_mode, reply_markup,"
        " disable_web_page_preview, priority)"
        " VALUES (?, ?, (SELECT id FROM users WHERE telegram_id = ?), ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, status",
        (
            request.dedupe_key,
            request.chat_id,
            request.chat_id,
            request.kind,
            request.text,
            request.parse_mode,
            request.reply_markup,
            request.disable_web_page_preview,
            request.priority,
        ),
    )
    if created is not None:
        return {"id": created["id"], "status": created["status"], "created": True}, True
    existing = db.fetchone(
        "SELECT id, status, chat_id, text, kind FROM outbox WHERE dedupe_key = ?",
        (request.dedupe_key,),
    )
    assert existing is not None  # unique rows are never deleted by the relay
    same = (existing["chat_id"], existing["text"], existing["kind"]) == (
        request.chat_id,
        request.text,
        request.kind,
    )
    if not same:
        raise SendConflict(existing["id"])
    return {"id": existing["id"], "status": existing["status"], "created": False}, False
