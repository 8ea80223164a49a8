from __future__ import annotations

import pytest

from monitors.decisions.telegram import Verdict, classify_telegram_response


def error(code: int, description: str, **parameters: int) -> dict[str, object]:
    body: dict[str, object] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


@pytest.mark.parametrize(
    ("status", "body", "verdict"),
    [
        (200, {"ok": True, "result": {"message_id": 5}}, Verdict.DELIVERED),
        (429, error(429, "Too Many Requests: retry after 7", retry_after=7), Verdict.RETRY_AFTER),
        (403, error(403, "Forbidden: bot was blocked by the user"), Verdict.RECIPIENT_BLOCKED),
        (403, error(403, "Forbidden: user is deactivated"), Verdict.RECIPIENT_BLOCKED),
        (
            403,
            error(403, "Forbidden: bot was kicked from the group chat"),
            Verdict.RECIPIENT_BLOCKED,
        ),
        (400, error(400, "Bad Request: chat not found"), Verdict.DEAD_LETTER),
        (400, error(400, "Bad Request: user not found"), Verdict.DEAD_LETTER),
        (400, error(400, "Bad Request: can't parse entities"), Verdict.DEAD_LETTER),
        (400, error(400, "Bad Request: message is too long"), Verdict.DEAD_LETTER),
        (
            400,
            error(400, "Bad Request: group chat was upgraded", migrate_to_chat_id=-1001),
            Verdict.CHAT_MIGRATED,
        ),
        (500, error(500, "Internal Server Error"), Verdict.BACKOFF),
        (502, None, Verdict.BACKOFF),
        (None, None, Verdict.BACKOFF),
        (401, error(401, "Unauthorized"), Verdict.BOT_FAULT),
        (404, error(404, "Not Found"), Verdict.BOT_FAULT),
        (409, error(409, "Conflict"), Verdict.DEAD_LETTER),
    ],
)
def test_classification(status, body, verdict):
    assert classify_telegram_response(status, body).verdict is verdict


def test_retry_after_and_migration_details_are_kept():
    outcome = classify_telegram_response(429, error(429, "Too Many Requests", retry_after=7))
    assert outcome.retry_after_s == 7.0
    migrated = classify_telegram_response(
        400, error(400, "Bad Request: upgraded", migrate_to_chat_id=-100123)
    )
    assert migrated.migrate_to_chat_id == -100123


def test_delivered_message_id_is_returned():
    outcome = classify_telegram_response(200, {"ok": True, "result": {"message_id": 77}})
    assert outcome.message_id == 77
