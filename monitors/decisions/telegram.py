"""What a Telegram Bot API answer means for one outbox message.

Telegram answers `{"ok": false, "error_code": N, "description": "...", "parameters": {...}}`.
The verdicts follow the Bot FAQ and NOTES.md: 429 waits `retry_after`; 403 (blocked, deactivated,
kicked) marks the recipient unreachable; 400 chat/user not found and other malformed requests go
to dead letters (retrying cannot fix them); 5xx and network errors back off; 401 is a broken token,
like a 404 from a wrong API URL, a fault of the whole monitor rather than of the message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    #: Flood control: wait `retry_after_s`, then try again; does not use up an attempt.
    RETRY_AFTER = "retry_after"
    #: The member blocked the bot or was deactivated: mark unreachable, stop.
    RECIPIENT_BLOCKED = "recipient_blocked"
    #: The chat became a supergroup: resend to `migrate_to_chat_id`.
    CHAT_MIGRATED = "chat_migrated"
    #: Permanent for this message (chat not found, bad request): dead letter now.
    DEAD_LETTER = "dead_letter"
    #: Transient (5xx, network, timeouts): back off and retry, counting the attempt.
    BACKOFF = "backoff"
    #: Our setup is broken (401 bad token, 404 unknown method or wrong API URL): the tick must
    #: fail and every message stay queued; no message is to blame.
    BOT_FAULT = "bot_fault"


@dataclass(frozen=True)
class TelegramOutcome:
    verdict: Verdict
    description: str = ""
    retry_after_s: float | None = None
    migrate_to_chat_id: int | None = None
    message_id: int | None = None


#: 400 descriptions that are transient despite the status (Telegram's own wording, lower case).
_TRANSIENT_400 = ("too many requests", "message thread not found")


def classify_telegram_response(
    http_status: int | None, body: Mapping[str, Any] | None
) -> TelegramOutcome:
    """Classify one Bot API exchange; `http_status=None` means the request never got an answer."""
    if http_status is None:
        return TelegramOutcome(Verdict.BACKOFF, "no response")
    body = body or {}
    description = str(body.get("description") or "")
    parameters = body.get("parameters") or {}
    code = body.get("error_code", http_status)
    if body.get("ok") is True and 200 <= http_status < 300:
        result = body.get("result")
        message_id = None
        if isinstance(result, Mapping):
            message_id = result.get("message_id")
        elif isinstance(result, list) and result and isinstance(result[-1], Mapping):
            message_id = result[-1].get("message_id")
        return TelegramOutcome(Verdict.DELIVERED, message_id=message_id)
    retry_after = parameters.get("retry_after")
    if code == 429 or http_status == 429:
        return TelegramOutcome(
            Verdict.RETRY_AFTER, description, retry_after_s=float(retry_after or 1)
        )
    if parameters.get("migrate_to_chat_id") is not None:
        new_chat_id = int(parameters["migrate_to_chat_id"])
        return TelegramOutcome(Verdict.CHAT_MIGRATED, description, migrate_to_chat_id=new_chat_id)
    if code in (401, 404) or http_status in (401, 404):
        return TelegramOutcome(Verdict.BOT_FAULT, description or f"HTTP {http_status}")
    if code == 403 or http_status == 403:
        return TelegramOutcome(Verdict.RECIPIENT_BLOCKED, description)
    if http_status >= 500 or (isinstance(code, int) and code >= 500):
        return TelegramOutcome(Verdict.BACKOFF, description)
    if http_status == 400 or code == 400:
        lowered = description.lower()
        if any(marker in lowered for marker in _TRANSIENT_400):
            return TelegramOutcome(Verdict.BACKOFF, description)
        return TelegramOutcome(Verdict.DEAD_LETTER, description)
    # 409, 413 ...: nothing a retry would change.
    return TelegramOutcome(Verdict.DEAD_LETTER, description or f"HTTP {http_status}")


#: Refusals of an admin-only method because of the bot's own standing in the chat (demoted, a
#: right taken away, removed from the chat), as Telegram words them (docs/sandbox.md). Unlike
#: other 400/403s they pass once an admin gives the bot its rights back.
_RIGHTS_REFUSALS = (
    "not enough rights",
    "chat_admin_required",
    "bot is not an administrator",
    "bot was kicked from the",
    "bot is not a member of the",
)


def bot_lacks_rights(description: str) -> bool:
    """Whether a refusal says the bot may not act in that chat (yet), not that the act is wrong."""
    lowered = description.lower()
    return any(marker in lowered for marker in _RIGHTS_REFUSALS)


#: approveChatJoinRequest's answers when the request is decided already: the user is in
#: (USER_ALREADY_PARTICIPANT) or the request is gone (HIDE_REQUESTER_MISSING: decided by an
#: admin, withdrawn, expired). Any other refusal leaves it pending, to be approved again.
USER_ALREADY_IN = "USER_ALREADY_PARTICIPANT"
REQUEST_GONE = "HIDE_REQUESTER_MISSING"
JOIN_REQUEST_DECIDED = (USER_ALREADY_IN, REQUEST_GONE)
