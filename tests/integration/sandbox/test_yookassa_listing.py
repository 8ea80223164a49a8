"""GET /v3/payments as YooKassa documents it: filters, newest first, cursor pages; the control
API's refund and request log."""

from __future__ import annotations

from urllib.parse import urlencode

from services.sandbox.clock import iso
from tests.integration.sandbox.conftest import START, Receiver, Sandbox
from tests.integration.sandbox.test_yookassa import PAYMENT, assert_error, call, wait_for


async def _made(sandbox: Sandbox, count: int) -> list[dict]:
    """`count` payments a minute apart, oldest first; the second one paid."""
    made = []
    for n in range(count):
        body = {**PAYMENT, "metadata": {"n": str(n)}}
        status, payment = await call(sandbox, "POST", "/payments", body)
        assert status == 200
        made.append(payment)
        sandbox.clock.advance(60)
    await sandbox.control("POST", f"/yookassa/payments/{made[1]['id']}/succeed")
    return made


async def _list(sandbox: Sandbox, **params: str) -> tuple[int, dict]:
    return await call(sandbox, "GET", f"/payments?{urlencode(params)}")


async def test_pages_newest_first_with_a_cursor(sandbox: Sandbox) -> None:
    made = await _made(sandbox, 5)
    status, first = await _list(sandbox, limit="2")
    assert status == 200
    assert first["type"] == "list"
    assert [p["id"] for p in first["items"]] == [made[4]["id"], made[3]["id"]]
    seen = [p["id"] for p in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        status, page = await _list(sandbox, limit="2", cursor=cursor)
        assert status == 200
        seen += [p["id"] for p in page["items"]]
        cursor = page.get("next_cursor")
    assert seen == [p["id"] for p in reversed(made)]
    _, default = await _list(sandbox)
    assert len(default["items"]) == 5
    assert "next_cursor" not in default  # the last page has none


async def test_filters_by_creation_time_status_and_method(sandbox: Sandbox) -> None:
    made = await _made(sandbox, 4)
    # made[n] was created at START + 60 n.
    _, window = await _list(
        sandbox,
        **{"created_at.gte": iso(START + 60), "created_at.lt": iso(START + 180)},
    )
    assert [p["id"] for p in window["items"]] == [made[2]["id"], made[1]["id"]]
    _, after = await _list(sandbox, **{"created_at.gt": iso(START + 60)})
    assert [p["id"] for p in after["items"]] == [made[3]["id"], made[2]["id"]]
    _, upto = await _list(sandbox, **{"created_at.lte": iso(START)})
    assert [p["id"] for p in upto["items"]] == [made[0]["id"]]
    _, paid = await _list(sandbox, status="succeeded")
    assert [p["id"] for p in paid["items"]] == [made[1]["id"]]
    _, by_card = await _list(sandbox, payment_method="bank_card")
    assert [p["id"] for p in by_card["items"]] == [made[1]["id"]]
    _, captured = await _list(sandbox, **{"captured_at.gte": iso(START)})
    assert [p["id"] for p in captured["items"]] == [made[1]["id"]]


async def test_bad_values_are_invalid_requests_naming_the_parameter(sandbox: Sandbox) -> None:
    await _made(sandbox, 2)
    for params, parameter in [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"created_at.gte": "yesterday"}, "created_at.gte"),
        ({"created_at.lt": "2025-01-01T00:00:00"}, "created_at.lt"),  # no zone
        ({"status": "paid"}, "status"),
        ({"cursor": "bm90LWFuLWlk"}, "cursor"),
    ]:
        status, body = await _list(sandbox, **params)
        assert status == 400, params
        assert_error(body, "invalid_request", parameter)


async def test_a_refund_from_the_control_api_notifies_and_calls_are_logged(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    await sandbox.control("PUT", "/yookassa/webhook", {"url": receiver.url})
    payment = (await _made(sandbox, 2))[1]  # the paid one
    partial = await sandbox.control(
        "POST", f"/yookassa/payments/{payment['id']}/refund", {"amount": "100.00"}
    )
    rest = await sandbox.control("POST", f"/yookassa/payments/{payment['id']}/refund", {})
    assert (partial["amount"]["value"], rest["amount"]["value"]) == ("100.00", "890.00")
    _, fetched = await call(sandbox, "GET", f"/refunds/{rest['id']}")
    assert fetched == rest
    _, refunded = await call(sandbox, "GET", f"/payments/{payment['id']}")
    assert (refunded["refunded_amount"]["value"], refunded["refundable"]) == ("990.00", False)
    await wait_for(
        lambda: (
            {b["object"]["id"] for _, b in receiver.calls if b["event"] == "refund.succeeded"}
            == {partial["id"], rest["id"]}
        )
    )
    posts = await sandbox.control("GET", "/yookassa/requests?method=POST&path=/v3/payments")
    assert len(posts) == 2
    assert all(r["idempotence_key"] for r in posts)
    gets = await sandbox.control("GET", "/yookassa/requests?method=GET")
    assert [r["path"] for r in gets] == [
        f"/v3/refunds/{rest['id']}",
        f"/v3/payments/{payment['id']}",
    ]


async def test_refunds_list_as_payments_do(sandbox: Sandbox) -> None:
    """GET /v3/refunds: newest first, cursor pages, filters by creation time, status and
    payment; a bad value names its parameter."""
    made = await _made(sandbox, 3)
    await sandbox.control("POST", f"/yookassa/payments/{made[2]['id']}/succeed")
    refunds = []
    for payment in (made[1], made[2], made[1]):
        refund = await sandbox.control(
            "POST", f"/yookassa/payments/{payment['id']}/refund", {"amount": "100.00"}
        )
        refunds.append(refund)
        sandbox.clock.advance(60)
    newest_first = [r["id"] for r in reversed(refunds)]

    status, first = await call(sandbox, "GET", "/refunds?limit=2")
    assert status == 200
    assert [r["id"] for r in first["items"]] == newest_first[:2]
    status, rest = await call(sandbox, "GET", f"/refunds?limit=2&cursor={first['next_cursor']}")
    assert [r["id"] for r in rest["items"]] == newest_first[2:]
    assert "next_cursor" not in rest

    since = urlencode({"created_at.gte": refunds[1]["created_at"], "status": "succeeded"})
    _, recent = await call(sandbox, "GET", f"/refunds?{since}")
    assert [r["id"] for r in recent["items"]] == newest_first[:2]
    _, of_one = await call(sandbox, "GET", f"/refunds?payment_id={made[1]['id']}")
    assert [r["id"] for r in of_one["items"]] == [refunds[2]["id"], refunds[0]["id"]]
    status, body = await call(sandbox, "GET", "/refunds?created_at.gte=yesterday")
    assert status == 400
    assert_error(body, "invalid_request", "created_at.gte")
