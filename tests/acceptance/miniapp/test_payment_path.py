"""A hostile member against the Mini App payment path: the API, botapi and payment_monitor as
real processes, the sandbox as Telegram and YooKassa, on both backends."""

from __future__ import annotations

import concurrent.futures
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from runtime.telegram_proof import sign_init_data, sign_login
from tests.acceptance.miniapp.conftest import (
    BOT_TOKEN,
    PRICE_MINOR,
    RETURN_URL,
    WAIT_S,
    Stack,
    http,
    member,
    wait_for,
)

MINUTE = timedelta(minutes=1)


def _succeed_and_apply(stack: Stack, provider_id: str) -> None:
    """The member pays on YooKassa's page; the webhook reaches botapi; payment_monitor runs."""
    stack.control("POST", f"/yookassa/payments/{provider_id}/succeed")
    wait_for(
        lambda: stack.db.fetchone(
            "SELECT id FROM provider_events WHERE object_id = ?", (provider_id,)
        ),
        WAIT_S,
        what="the webhook to reach botapi",
    )
    stack.payment_monitor()


def _no_leak(body: Any) -> None:
    text = str(body)
    assert "Traceback" not in text, text
    assert 'File "' not in text, text


def test_a_member_pays_through_the_mini_app_and_gets_exactly_one_period(stack: Stack) -> None:
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    status, body, _ = stack.pay(
        member(telegram_id), {"telegram_id": telegram_id, "tariff_code": tariff}
    )
    assert status == 201, body
    assert body["amount"] == {"value": "1499.00", "currency": "RUB"}
    assert body["status"] == "pending"
    assert body["confirmation_url"]
    provider = stack.provider_payment(body["provider_payment_id"])
    assert provider["amount"] == {"value": "1499.00", "currency": "RUB"}
    assert provider["confirmation"]["return_url"] == RETURN_URL
    # Not yet paid: no access.
    assert stack.status(telegram_id, member(telegram_id))[1]["status"] == "none"
    before = datetime.now(UTC)
    _succeed_and_apply(stack, body["provider_payment_id"])
    [sub] = stack.subscriptions_of(user_id)
    assert sub["status"] == "active"
    start, end = sub["current_period_start"], sub["current_period_end"]
    assert before - timedelta(seconds=5) <= start <= datetime.now(UTC) + timedelta(seconds=5)
    assert end - start == timedelta(days=30)
    code, seen = stack.status(telegram_id, member(telegram_id))
    assert code == 200
    assert seen["is_active"]
    assert seen["tariff_code"] == tariff


def test_ten_taps_at_once_make_one_open_payment_and_one_checkout(stack: Stack) -> None:
    """A Mini App whose Pay button is tapped ten times (each tap its own Idempotence-Key, as a
    client that makes a key per tap does) must not leave ten checkout pages to pay."""
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: stack.pay(member(telegram_id), body), range(10)))
    assert all(status in (200, 201) for status, _, _ in answers), answers
    ids = {answer["id"] for _, answer, _ in answers}
    urls = {answer["confirmation_url"] for _, answer, _ in answers}
    assert len(ids) == 1, answers
    assert len(urls) == 1, answers
    assert len(stack.payments_of(user_id)) == 1
    assert sorted(status for status, _, _ in answers) == [200] * 9 + [201]
    # YooKassa holds one payment of this member, and paying it gives one period.
    at_provider = [
        p
        for p in stack.control("GET", "/yookassa/payments")
        if p["metadata"].get("telegram_id") == str(telegram_id)
    ]
    assert len(at_provider) == 1, at_provider
    _succeed_and_apply(stack, at_provider[0]["id"])
    [sub] = stack.subscriptions_of(user_id)
    assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)


def test_the_same_key_ten_times_at_once_is_one_payment(stack: Stack) -> None:
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    key = "tap-once"
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: stack.pay(member(telegram_id), body, key), range(10)))
    assert {a["id"] for _, a, _ in answers} == {stack.payments_of(user_id)[0]["id"]}, answers
    providers = {a["provider_payment_id"] for _, a, _ in answers}
    assert len(providers) == 1
    assert len(stack.payments_of(user_id)) == 1


def test_a_second_payment_after_success_extends_by_exactly_one_period(stack: Stack) -> None:
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    _, first, _ = stack.pay(member(telegram_id), body)
    _succeed_and_apply(stack, first["provider_payment_id"])
    [sub] = stack.subscriptions_of(user_id)
    status, second, _ = stack.pay(member(telegram_id), body)
    assert status == 201
    assert second["id"] != first["id"]
    assert second["kind"] == "renewal"
    _succeed_and_apply(stack, second["provider_payment_id"])
    [after] = stack.subscriptions_of(user_id)
    assert after["current_period_start"] == sub["current_period_end"]
    assert after["current_period_end"] - sub["current_period_end"] == timedelta(days=30)


def test_a_canceled_checkout_gives_nothing_and_a_new_payment_can_start(stack: Stack) -> None:
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    _, first, _ = stack.pay(member(telegram_id), body)
    stack.control(
        "POST",
        f"/yookassa/payments/{first['provider_payment_id']}/cancel",
        {"reason": "expired_on_confirmation"},
    )
    wait_for(
        lambda: stack.db.fetchone(
            "SELECT id FROM provider_events WHERE object_id = ?", (first["provider_payment_id"],)
        ),
        WAIT_S,
    )
    stack.payment_monitor()
    assert stack.subscriptions_of(user_id) == []
    status, second, _ = stack.pay(member(telegram_id), body)
    assert status == 201, second
    assert second["id"] != first["id"]


def test_webhooks_are_no_proof_forged_replayed_or_out_of_order(stack: Stack) -> None:
    """Notifications botapi gets are only hints: a payment.succeeded for a payment YooKassa does
    not know, or for the member's real payment still pending, a payment.canceled for one that
    succeeded, and the real notification replayed after it was applied change nothing."""
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    webhook = stack.control("GET", "/yookassa/webhook")["url"]

    def notify(event: str, object_id: str, status: str) -> None:
        forged = {
            "type": "notification",
            "event": event,
            "object": {
                "id": object_id,
                "status": status,
                "paid": status == "succeeded",
                "amount": {"value": "1499.00", "currency": "RUB"},
                "metadata": {"telegram_id": str(telegram_id), "source": "api"},
            },
        }
        code, answer, _ = http("POST", webhook, forged)
        assert code < 500, answer

    notify("payment.succeeded", "2f000000-000f-5000-9000-000000000001", "succeeded")
    _, paid, _ = stack.pay(member(telegram_id), {"telegram_id": telegram_id, "tariff_code": tariff})
    notify("payment.succeeded", paid["provider_payment_id"], "succeeded")
    stack.payment_monitor()
    assert stack.subscriptions_of(user_id) == []
    assert stack.payments_of(user_id)[0]["status"] == "pending"

    _succeed_and_apply(stack, paid["provider_payment_id"])
    [sub] = stack.subscriptions_of(user_id)
    notify("payment.canceled", paid["provider_payment_id"], "canceled")
    notify("payment.succeeded", paid["provider_payment_id"], "succeeded")
    stack.payment_monitor()
    assert stack.subscriptions_of(user_id) == [sub]
    [row] = stack.payments_of(user_id)
    assert row["status"] == "succeeded"


def test_a_refund_racing_the_success_takes_the_period_back(stack: Stack) -> None:
    """The shop refunds the payment before payment_monitor applied its success: in the end the
    member has no access, and was told; whichever notification is handled first."""
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    _, paid, _ = stack.pay(member(telegram_id), {"telegram_id": telegram_id, "tariff_code": tariff})
    provider_id = paid["provider_payment_id"]
    stack.control("POST", f"/yookassa/payments/{provider_id}/succeed")
    refund = stack.control("POST", f"/yookassa/payments/{provider_id}/refund", {})
    for object_id in (provider_id, refund["id"]):
        wait_for(
            lambda object_id=object_id: stack.db.fetchone(
                "SELECT id FROM provider_events WHERE object_id = ?", (object_id,)
            ),
            WAIT_S,
            what=f"the notification of {object_id}",
        )
    stack.payment_monitor()
    stack.payment_monitor()
    [sub] = stack.subscriptions_of(user_id)
    assert sub["status"] == "expired", sub
    code, seen = stack.status(telegram_id, member(telegram_id))
    assert code == 200
    assert not seen["is_active"]


def test_a_tariff_taken_off_sale_after_checkout_still_delivers_what_was_paid(stack: Stack) -> None:
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    _, paid, _ = stack.pay(member(telegram_id), {"telegram_id": telegram_id, "tariff_code": tariff})
    stack.db.execute(
        "UPDATE tariffs SET is_active = ?, price_minor = ? WHERE code = ?", (False, 99, tariff)
    )
    _succeed_and_apply(stack, paid["provider_payment_id"])
    [sub] = stack.subscriptions_of(user_id)
    assert sub["status"] == "active"
    assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)
    [row] = stack.payments_of(user_id)
    assert row["status"] == "succeeded"
    assert row["amount_minor"] == PRICE_MINOR
    # And it is off sale now: 404, as an unknown code.
    status, body, _ = stack.pay(
        member(telegram_id), {"telegram_id": telegram_id, "tariff_code": tariff}
    )
    assert status == 404
    assert body["error"]["code"] == "tariff_not_found"


def test_hostile_bodies_and_proofs_get_clear_errors_and_no_rows(stack: Stack) -> None:
    telegram_id, user_id = stack.new_member()
    victim, victim_user = stack.new_member()
    tariff = stack.new_tariff()
    now = int(time.time())
    good = member(telegram_id)
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    cases: list[tuple[str, dict[str, str], Any, int, str]] = [
        ("for another member", good, {**body, "telegram_id": victim}, 403, "forbidden"),
        ("expired", member(telegram_id, auth_date=now - 86_400 - 60), body, 401, "unauthorized"),
        ("future", member(telegram_id, auth_date=now + 600), body, 401, "unauthorized"),
        ("no proof", {}, body, 401, "unauthorized"),
        ("amount", good, {**body, "amount": {"value": "1.00", "currency": "RUB"}}, 422, ""),
        ("currency", good, {**body, "currency": "XTR"}, 422, ""),
        ("unknown tariff", good, {**body, "tariff_code": "gold"}, 404, "tariff_not_found"),
        ("evil return", good, {**body, "return_url": "https://evil.example/x"}, 422, ""),
        ("userinfo", good, {**body, "return_url": "https://t.me@evil.example/"}, 422, ""),
        ("suffix", good, {**body, "return_url": "https://t.me.evil.example/"}, 422, ""),
        ("http", good, {**body, "return_url": "http://t.me/x"}, 422, ""),
        ("port", good, {**body, "return_url": "https://t.me:8443/x"}, 422, ""),
        ("backslash", good, {**body, "return_url": "https://t.me\\@evil.example/"}, 422, ""),
        ("js", good, {**body, "return_url": "javascript:alert(1)//https://t.me/"}, 422, ""),
        ("big", good, {**body, "tariff_code": "x" * 70_000}, 413, "payload_too_large"),
    ]
    for name, headers, sent, expected, code in cases:
        status, answer, _ = stack.pay(headers, sent)
        assert status == expected, (name, status, answer)
        assert "error" in answer, (name, answer)
        if code:
            assert answer["error"]["code"] == code, (name, answer)
        _no_leak(answer)
        assert str(victim) not in str(answer) or name == "for another member", (name, answer)
    assert stack.payments_of(user_id) == []
    assert stack.payments_of(victim_user) == []


def test_a_grace_that_ran_out_is_no_access_in_the_mini_app(stack: Stack) -> None:
    """Between the end of a grace period and tsmonitor's next tick the row still says `grace`,
    while ban_monitor already removes the member by the entitlement rule: the Mini App must not
    show them as a member with access."""
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    tariff_id = stack.db.fetchval("SELECT id FROM tariffs WHERE code = ?", (tariff,))
    now = datetime.now(UTC)
    stack.db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, grace_until) VALUES (?, ?, 'grace', ?, ?, ?)",
        (user_id, tariff_id, now - timedelta(days=33), now - timedelta(days=3), now - MINUTE),
    )
    code, seen = stack.status(telegram_id, member(telegram_id))
    assert code == 200
    assert seen["is_active"] is False, seen
    assert seen["status"] == "expired", seen
    # A grace still running is access, as ban_monitor sees it.
    other, other_user = stack.new_member()
    stack.db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end, grace_until) VALUES (?, ?, 'grace', ?, ?, ?)",
        (other_user, tariff_id, now - timedelta(days=31), now - timedelta(days=1), now + MINUTE),
    )
    code, seen = stack.status(other, member(other))
    assert code == 200
    assert seen["status"] == "grace"
    assert seen["is_active"] is True


def test_a_lost_answer_then_a_new_tap_is_still_one_payment(stack: Stack) -> None:
    """YooKassa made the payment but its answer never reached the API (502). The member taps
    again, with a new key: the same payment comes back, sent again under its first key, so
    YooKassa returns the payment it made instead of a second one."""
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    made_before = len(stack.control("GET", "/yookassa/payments"))
    stack.control(
        "POST", "/faults", {"api": "yookassa", "mode": "timeout", "count": 1, "delay_s": 3}
    )
    status, lost, _ = stack.pay(member(telegram_id), body)
    assert status == 502, lost
    assert lost["error"]["code"] == "provider_unavailable"
    _no_leak(lost)
    status, again, _ = stack.pay(member(telegram_id), body)
    assert status == 200, again
    [row] = stack.payments_of(user_id)
    assert again["id"] == row["id"]
    assert again["confirmation_url"]
    assert len(stack.control("GET", "/yookassa/payments")) == made_before + 1
    _succeed_and_apply(stack, again["provider_payment_id"])
    [sub] = stack.subscriptions_of(user_id)
    assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)


def test_paying_in_grace_continues_and_after_a_lapsed_grace_starts_now(stack: Stack) -> None:
    """In grace the paid days continue the old period (no gap, no gift); once the grace ran out
    (the row still says grace until tsmonitor's tick) they start at payment."""
    tariff = stack.new_tariff()
    tariff_id = stack.db.fetchval("SELECT id FROM tariffs WHERE code = ?", (tariff,))
    now = datetime.now(UTC)
    ends = {}
    for case, grace_until in (("grace", now + timedelta(days=1)), ("lapsed", now - MINUTE)):
        telegram_id, user_id = stack.new_member()
        end = now - timedelta(days=2)
        stack.db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, grace_until) VALUES (?, ?, 'grace', ?, ?, ?)",
            (user_id, tariff_id, end - timedelta(days=30), end, grace_until),
        )
        status, paid, _ = stack.pay(
            member(telegram_id), {"telegram_id": telegram_id, "tariff_code": tariff}
        )
        assert status == 201, paid
        assert paid["kind"] == "renewal"
        before = datetime.now(UTC)
        _succeed_and_apply(stack, paid["provider_payment_id"])
        [sub] = stack.subscriptions_of(user_id)
        assert sub["status"] == "active", (case, sub)
        assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)
        ends[case] = (sub["current_period_start"], end, before)
    start, end, _ = ends["grace"]
    assert start == end
    start, _, before = ends["lapsed"]
    assert before - timedelta(seconds=5) <= start <= datetime.now(UTC)


def test_forged_initdata_pays_for_nobody(stack: Stack) -> None:
    """initData bent every way a member could try: nothing is paid for anyone, each gets 401
    (or 403 acting for another), and the same bytes re-encoded are still the member's own."""
    telegram_id, user_id = stack.new_member()
    victim, victim_user = stack.new_member()
    tariff = stack.new_tariff()
    now = int(time.time())
    own = sign_init_data(BOT_TOKEN, {"id": telegram_id, "first_name": "A"})
    old = sign_init_data(BOT_TOKEN, {"id": victim, "first_name": "V"}, auth_date=now - 90_000)
    victim_user_json = quote(json.dumps({"id": victim, "first_name": "V"}, separators=(",", ":")))
    forged = {
        # The victim's stale proof with a fresh auth_date appended (last one wins when parsed).
        "auth_date appended": f"tma {old}&auth_date={now}",
        # The member's own proof with the victim's user appended, or put first.
        "user appended": f"tma {own}&user={victim_user_json}",
        "user prepended": f"tma user={victim_user_json}&{own}",
        # Signed for another bot.
        "another bot": "tma " + sign_init_data("1:another-bot", {"id": victim, "first_name": "V"}),
        # The Mini App proof presented as Login Widget data, and the reverse.
        "as login widget": f"tglogin {own}",
        "login as mini app": "tma " + sign_login(BOT_TOKEN, victim),
        # The hash in upper case, or twice (an empty one first).
        "upper hash": "tma "
        + own[: own.index("hash=") + 5]
        + own[own.index("hash=") + 5 :].upper(),
        "hash twice": f"tma hash=&{own}",
        "no hash": "tma " + "&".join(p for p in own.split("&") if not p.startswith("hash=")),
    }
    for name, authorization in forged.items():
        status, answer, _ = stack.pay(
            {"Authorization": authorization}, {"telegram_id": victim, "tariff_code": tariff}
        )
        assert status in (401, 403), (name, status, answer)
        assert str(victim) not in answer["error"]["message"], (name, answer)
    # A field given twice counts once, the last, for the signature as for the user: the
    # member's own proof with the victim's user appended is no proof for anybody.
    status, answer, _ = stack.pay(
        {"Authorization": forged["user appended"]},
        {"telegram_id": telegram_id, "tariff_code": tariff},
    )
    assert status == 401, answer
    assert stack.payments_of(user_id) == []
    assert stack.payments_of(victim_user) == []
    # The member's own proof, its user field percent-encoded differently, is still theirs.
    reencoded = own.replace("%7B", "{").replace("%22", '"').replace("%3A", ":")
    status, answer, _ = stack.pay(
        {"Authorization": f"tma {reencoded}"}, {"telegram_id": telegram_id, "tariff_code": tariff}
    )
    assert status == 201, answer


def test_a_checkout_canceled_unnoticed_is_not_offered_again(stack: Stack) -> None:
    """The member's checkout was canceled at YooKassa and the notification never came (botapi
    down, say): a new tap must not get the dead checkout page back, but a new payment."""
    telegram_id, user_id = stack.new_member()
    tariff = stack.new_tariff()
    body = {"telegram_id": telegram_id, "tariff_code": tariff}
    _, first, _ = stack.pay(member(telegram_id), body)
    webhook = stack.control("GET", "/yookassa/webhook")["url"]
    stack.control("PUT", "/yookassa/webhook", {"url": None})
    try:
        stack.control(
            "POST",
            f"/yookassa/payments/{first['provider_payment_id']}/cancel",
            {"reason": "expired_on_confirmation"},
        )
        status, second, _ = stack.pay(member(telegram_id), body)
    finally:
        stack.control("PUT", "/yookassa/webhook", {"url": webhook})
    assert status == 201, second
    assert second["id"] != first["id"]
    assert stack.provider_payment(second["provider_payment_id"])["status"] == "pending"
    # Paid, the new one gives exactly one period; the old one, found canceled, nothing.
    _succeed_and_apply(stack, second["provider_payment_id"])
    stack.payment_monitor()
    [sub] = stack.subscriptions_of(user_id)
    assert sub["current_period_end"] - sub["current_period_start"] == timedelta(days=30)
