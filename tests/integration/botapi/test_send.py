"""POST /send: bearer token, idempotent by dedupe key, conflicts; health and metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from tests.integration.botapi.conftest import SEND_TOKEN

AUTH = {"Authorization": f"Bearer {SEND_TOKEN}"}


def test_send_enqueues_once_per_dedupe_key(client: Any, sync_db: Any) -> None:
    user_id = sync_db.fetchval(
        "INSERT INTO users (telegram_id) VALUES (?) RETURNING id", (777_000_001,)
    )
    body = {
        "chat_id": 777_000_001,
        "text": "<b>Оплата получена</b>",
        "dedupe_key": "receipt:1",
        "kind": "receipt",
        "parse_mode": "HTML",
        "reply_markup": {"inline_keyboard": [[{"text": "OK", "callback_data": "ok"}]]},
        "priority": 10,
    }
    first = client.post("/send", json=body, headers=AUTH)
    assert first.status_code == 201
    assert first.json["created"] is True
    again = client.post("/send", json=body, headers=AUTH)
    assert again.status_code == 200
    assert again.json == {**first.json, "created": False}

    row = sync_db.fetchone("SELECT * FROM outbox")
    assert row["user_id"] == user_id
    assert row["status"] == "queued"
    assert row["reply_markup"] == body["reply_markup"]
    assert row["priority"] == 10

    different = client.post("/send", json={**body, "text": "другое"}, headers=AUTH)
    assert different.status_code == 409
    assert different.json["error"]["outbox_id"] == first.json["id"]
    assert sync_db.fetchval("SELECT count(*) FROM outbox") == 1


def test_send_requires_the_bearer_token(client: Any, make_client: Any) -> None:
    body = {"chat_id": 1, "text": "hi", "dedupe_key": "k"}
    assert client.post("/send", json=body).status_code == 401
    wrong = client.post("/send", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json["error"]["code"] == "unauthorized"
    disabled = make_client(BOTAPI_SEND_TOKEN="").post("/send", json=body, headers=AUTH)
    assert disabled.status_code == 403


def test_send_validates_the_body(client: Any) -> None:
    for bad in (
        {"chat_id": 1, "text": "", "dedupe_key": "k"},
        {"chat_id": 1, "text": "a\x00b", "dedupe_key": "k"},
        {"chat_id": 2**70, "text": "t", "dedupe_key": "k"},
        {"chat_id": 1, "text": "t"},
        {"chat_id": 1, "text": "t", "dedupe_key": "k", "parse_mode": "html"},
        {"chat_id": 1, "text": "t", "dedupe_key": "k", "unknown": 1},
    ):
        response = client.post("/send", json=bad, headers=AUTH)
        assert response.status_code == 422, bad
        assert response.json["error"]["code"] == "validation_error"
    assert client.post("/send", data="x", headers=AUTH).status_code == 400


def test_health_metrics_and_json_errors(client: Any) -> None:
    assert client.get("/health").json == {"status": "ok", "database": "ok"}
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json["error"]["code"] == "not_found"
    assert client.get("/send").status_code == 405
    labels = {"program": "botapi-test", "route": "/health", "method": "GET", "status": "200"}
    before = REGISTRY.get_sample_value("domos_http_requests_total", labels) or 0
    client.get("/health")
    assert REGISTRY.get_sample_value("domos_http_requests_total", labels) == before + 1
    text = client.get("/metrics").get_data(as_text=True)
    assert 'route="<unmatched>"' in text
    assert "/nowhere" not in text


def test_health_is_503_when_the_database_is_down(client: Any, sync_db: Any) -> None:
    sync_db.close()
    down = client.get("/health")
    assert down.status_code == 503
    send = client.post("/send", json={"chat_id": 1, "text": "t", "dedupe_key": "k"}, headers=AUTH)
    assert send.status_code == 503
    assert send.json["error"]["code"] == "database_unavailable"


def test_send_refuses_a_text_that_cannot_be_split(client: Any, sync_db: Any) -> None:
    """An HTML tag longer than one Telegram message: no part could hold it, so nothing is
    queued and the caller learns why at once (the splitter decides, as notifymonitor's does)."""
    text = '<a href="https://x/' + "a" * 5000 + '">link</a> tail'
    body = {"chat_id": 1, "text": text, "dedupe_key": "long-tag", "parse_mode": "HTML"}
    refused = client.post("/send", json=body, headers=AUTH)
    assert refused.status_code == 400
    assert refused.json["error"]["code"] == "unsendable_text"
    assert "longer than one part" in refused.json["error"]["message"]
    assert sync_db.fetchval("SELECT count(*) FROM outbox") == 0
    # The same characters as plain text split anywhere: queued.
    plain = client.post("/send", json={**body, "parse_mode": None}, headers=AUTH)
    assert plain.status_code == 201
