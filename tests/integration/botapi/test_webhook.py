"""The YooKassa webhook: re-fetch, record once, never believe the body."""

from __future__ import annotations

from typing import Any

from tests.integration.api.processes import SandboxProcess
from tests.integration.botapi.conftest import notification, our_payment

URL = "/yookassa/webhook"


def events(db: Any) -> list[dict[str, Any]]:
    return db.fetchall("SELECT * FROM provider_events ORDER BY id")


def test_event_is_recorded_once_with_the_fetched_object(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    payment = sandbox.create_payment("990.00")
    our_payment(sync_db, payment["id"])
    sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    # The body lies about the amount: only the fetched object is stored.
    body = notification(
        "payment.succeeded", payment["id"], status="succeeded", amount={"value": "1.00"}
    )
    first = client.post(URL, json=body)
    assert first.status_code == 200, first.json
    assert first.json["status"] == "recorded"
    second = client.post(URL, json=body)
    assert (second.status_code, second.json["status"]) == (200, "duplicate")

    [event] = events(sync_db)
    assert event["event_key"] == f"payment.succeeded:{payment['id']}"
    assert event["payload"]["status"] == "succeeded"
    assert event["payload"]["amount"]["value"] == "990.00"
    assert event["source_ip"] == "127.0.0.1"
    assert event["processed_at"] is None


def test_forged_or_premature_events_are_not_recorded(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    pending = sandbox.create_payment()
    our_payment(sync_db, pending["id"])
    claimed = client.post(URL, json=notification("payment.succeeded", pending["id"]))
    assert (claimed.status_code, claimed.json["status"]) == (409, "unconfirmed")

    # It names our row that waits for its create answer, but the provider knows no such payment.
    waiting = str(our_payment(sync_db, None))
    unknown = client.post(
        URL,
        json=notification(
            "payment.succeeded", "2d0b-no-payment", metadata={"payment_row": waiting}
        ),
    )
    assert unknown.status_code == 400

    for bad in ({"event": "payment.succeeded"}, [], {"type": "notification", "event": "x"}):
        assert client.post(URL, json=bad).status_code == 400
    not_json = client.post(URL, data=b"{", content_type="application/json")
    assert not_json.status_code == 400
    assert not_json.json["error"]["code"] == "bad_request"
    # Deeper than the parser recurses (200 KB, under the body limit): refused as not JSON.
    deep = client.post(URL, data=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    assert (deep.status_code, deep.json["error"]["code"]) == (400, "bad_request")

    ignored = client.post(URL, json=notification("deal.closed", "abc"))
    assert (ignored.status_code, ignored.json["status"]) == (200, "ignored")
    # A body whose event is no event name is refused, not logged as an ignored event.
    flood = client.post(URL, json=notification("payment." + "A" * 100_000, "abc"))
    assert flood.status_code == 400
    assert events(sync_db) == []


def test_waiting_for_capture_event_after_the_payment_moved_on(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    payment = sandbox.create_payment()
    our_payment(sync_db, payment["id"])
    sandbox.control("POST", f"/yookassa/payments/{payment['id']}/cancel")
    answer = client.post(URL, json=notification("payment.waiting_for_capture", payment["id"]))
    assert answer.status_code == 200
    assert events(sync_db)[0]["payload"]["status"] == "canceled"


def test_provider_unavailable_asks_yookassa_to_retry(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    payment = sandbox.create_payment()
    our_payment(sync_db, payment["id"])
    sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    sandbox.arm_fault(count=1)
    body = notification("payment.succeeded", payment["id"])
    failed = client.post(URL, json=body)
    assert (failed.status_code, failed.json["status"]) == (503, "retry")
    assert events(sync_db) == []
    assert client.post(URL, json=body).json["status"] == "recorded"


def test_source_allow_list_and_trusted_proxies(
    make_client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    client = make_client(BOTAPI_WEBHOOK_ALLOWLIST="yookassa", BOTAPI_TRUSTED_PROXIES="10.0.0.0/8")
    payment = sandbox.create_payment()
    our_payment(sync_db, payment["id"])
    sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    body = notification("payment.succeeded", payment["id"])

    local = client.post(URL, json=body)
    assert local.status_code == 403
    # X-Forwarded-For from a peer that is not a trusted proxy is ignored.
    spoofed = client.post(
        URL,
        json=body,
        headers={"X-Forwarded-For": "185.71.76.5"},
        environ_overrides={"REMOTE_ADDR": "198.51.100.9"},
    )
    assert spoofed.status_code == 403
    proxied = client.post(
        URL,
        json=body,
        headers={"X-Forwarded-For": "1.2.3.4, 185.71.76.5"},
        environ_overrides={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert proxied.status_code == 200, proxied.json
    assert events(sync_db)[0]["source_ip"] == "185.71.76.5"
    direct = client.post(URL, json=body, environ_overrides={"REMOTE_ADDR": "77.75.156.11"})
    assert direct.json["status"] == "duplicate"


def test_a_notification_about_no_payment_of_ours_costs_no_provider_call(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    """A flood of invented ids used to cost a provider GET each, on one of two sync workers."""
    elsewhere = sandbox.create_payment()  # the shop's, but not one of our rows
    sandbox.control("POST", f"/yookassa/payments/{elsewhere['id']}/succeed")
    sandbox.arm_fault(count=1)  # the next provider call, if any were made, would fail
    for body in (
        notification("payment.succeeded", "2d0b-invented"),
        notification("payment.succeeded", elsewhere["id"], metadata={"payment_row": "999999"}),
        notification("refund.succeeded", "refund-invented", payment_id=elsewhere["id"]),
        notification("refund.succeeded", "refund-invented"),
    ):
        answer = client.post(URL, json=body)
        assert (answer.status_code, answer.json["status"]) == (200, "ignored"), body
    armed = sandbox.control("GET", "/faults")
    sandbox.arm_fault(count=0)  # disarm: the sandbox outlives this test
    assert armed["yookassa"]["remaining"] == 1
    assert events(sync_db) == []


def test_a_row_still_waiting_for_its_create_answer_is_confirmed_by_the_provider(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    """The create answer was lost: our row has no provider id yet; the notification names the
    row in the metadata our request carried, so the provider is asked."""
    row = our_payment(sync_db, None)
    payment = sandbox.create_payment()
    sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    body = notification("payment.succeeded", payment["id"], metadata={"payment_row": str(row)})
    answer = client.post(URL, json=body)
    assert (answer.status_code, answer.json["status"]) == (200, "recorded"), answer.json
    # Once the row is finished, the same hint no longer opens the door.
    sync_db.execute(
        "UPDATE payments SET status = 'canceled', processed_at = updated_at WHERE id = ?", (row,)
    )
    other = sandbox.create_payment()
    body = notification("payment.succeeded", other["id"], metadata={"payment_row": str(row)})
    assert client.post(URL, json=body).json["status"] == "ignored"


def test_a_refund_event_is_recorded_only_when_the_provider_has_the_refund(
    client: Any, sync_db: Any, sandbox: SandboxProcess
) -> None:
    payment = sandbox.create_payment("990.00")
    sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
    our_payment(sync_db, payment["id"])
    # A forged refund of a payment of ours: the provider does not know the refund id.
    forged = notification(
        "refund.succeeded",
        "00000099-0015-5000-9000-000000000099",
        status="succeeded",
        payment_id=payment["id"],
        amount={"value": "990.00", "currency": "RUB"},
    )
    refused = client.post(URL, json=forged)
    assert (refused.status_code, refused.json["status"]) == (400, "rejected")
    assert events(sync_db) == []

    refund = sandbox.control("POST", f"/yookassa/payments/{payment['id']}/refund", {})
    body = notification("refund.succeeded", refund["id"], payment_id=payment["id"])
    real = client.post(URL, json=body)
    assert (real.status_code, real.json["status"]) == (200, "recorded")
    [event] = events(sync_db)
    assert (event["event_type"], event["object_id"]) == ("refund.succeeded", refund["id"])
    assert event["payload"]["payment_id"] == payment["id"]
