"""Auto-renewal is the member's to choose, knowingly (F3): the payment message says whether
the card is saved and charged every period; a member's own /cancel_autorenew sticks until
their /autorenew_on; /cancel_autorenew says when a charge started before is still open."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.integration.bot.conftest import BotProcess, Sandbox
from tests.integration.bot.test_bot import _start, _tariff, _user_id


def _autopaying(bot: BotProcess, telegram_id: int, *, revoked: bool = False) -> int:
    """A live subscription renewed with a saved card (•••• 4242); its id."""
    user_id = _user_id(bot, telegram_id)
    now = datetime.now(UTC)
    method_id = bot.db.fetchval(
        "INSERT INTO payment_methods (provider_method_id, user_id, method_type, card_last4,"
        " is_saved, revoked_at) VALUES (?, ?, 'bank_card', '4242', ?, ?) RETURNING id",
        (f"pm-{uuid.uuid4()}", user_id, True, now if revoked else None),
    )
    return int(
        bot.db.fetchval(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, auto_renew, payment_method_id, next_charge_at)"
            " VALUES (?, ?, 'active', ?, ?, ?, ?, ?) RETURNING id",
            (
                user_id,
                _tariff(bot),
                now - timedelta(days=20),
                now + timedelta(days=10),
                True,
                method_id,
                now + timedelta(days=9),
            ),
        )
    )


def _subscription(bot: BotProcess, sub_id: int) -> dict:
    return dict(bot.db.fetchone("SELECT * FROM subscriptions WHERE id = ?", (sub_id,)))


def _payment_of(bot: BotProcess, telegram_id: int) -> dict:
    return dict(
        bot.db.fetchone(
            "SELECT * FROM payments WHERE user_id = ? ORDER BY id DESC LIMIT 1",
            (_user_id(bot, telegram_id),),
        )
    )


def test_the_payment_message_discloses_auto_renewal(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    _tariff(bot_process)
    member = _start(sandbox)
    sandbox.say(member, "/subscribe")
    reply = sandbox.wait_sent(member, 2)[1]["text"]

    assert _payment_of(bot_process, member)["save_payment_method"] is True
    assert "Карта сохранится" in reply
    assert "каждые 30 дн." in reply
    assert "1500 ₽" in reply
    assert "/cancel_autorenew" in reply


def test_a_members_stop_makes_subscribe_one_time_until_autorenew_on(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    member = _start(sandbox)
    sub_id = _autopaying(bot_process, member)
    sandbox.say(member, "/cancel_autorenew")
    assert "/autorenew_on" in sandbox.wait_sent(member, 2)[1]["text"]

    sandbox.say(member, "/subscribe")
    reply = sandbox.wait_sent(member, 3)[2]["text"]
    payment = _payment_of(bot_process, member)
    assert payment["save_payment_method"] is False
    assert payment["metadata"]["provider_request"]["save_payment_method"] is False
    assert "разовая оплата" in reply
    assert "Карта сохранится" not in reply

    sandbox.say(member, "/autorenew_on")
    on = sandbox.wait_sent(member, 4)[3]["text"]
    assert "Автопродление включено" in on
    assert "•••• 4242" in on
    assert "1500 ₽" in on
    assert "каждые 30 дн." in on
    assert "/cancel_autorenew" in on
    sub = _subscription(bot_process, sub_id)
    assert (sub["auto_renew"], sub["auto_renew_stopped_reason"]) == (True, None)
    sandbox.say(member, "/autorenew_on")
    assert "уже включено" in sandbox.wait_sent(member, 5)[4]["text"]

    # Back on: the next payment saves the card again, and says so (not the open one-time link).
    sandbox.say(member, "/subscribe")
    assert "Карта сохранится" in sandbox.wait_sent(member, 6)[5]["text"]
    assert _payment_of(bot_process, member)["save_payment_method"] is True


def test_autorenew_on_without_a_usable_card_asks_for_a_payment_that_saves_one(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    member = _start(sandbox)
    sub_id = _autopaying(bot_process, member, revoked=True)
    sandbox.say(member, "/cancel_autorenew")
    sandbox.wait_sent(member, 2)

    sandbox.say(member, "/autorenew_on")
    assert "/subscribe" in sandbox.wait_sent(member, 3)[2]["text"]
    sub = _subscription(bot_process, sub_id)
    assert (sub["auto_renew"], sub["auto_renew_stopped_reason"]) == (False, None)
    sandbox.say(member, "/subscribe")
    assert "Карта сохранится" in sandbox.wait_sent(member, 4)[3]["text"]


def test_cancel_autorenew_while_a_charge_is_open_says_it_is_still_checked(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    member = _start(sandbox)
    sub_id = _autopaying(bot_process, member)
    sub = _subscription(bot_process, sub_id)
    bot_process.db.execute(
        "INSERT INTO charge_attempts (subscription_id, period_end, attempt_no, idempotence_key,"
        " payment_method_id, amount_minor, status) VALUES (?, ?, 1, ?, ?, 150000, 'pending')",
        (sub_id, sub["current_period_end"], f"charge-{uuid.uuid4()}", sub["payment_method_id"]),
    )
    sandbox.say(member, "/cancel_autorenew")
    reply = sandbox.wait_sent(member, 2)[1]["text"]
    assert "Автопродление отключено" in reply
    assert "ещё проверяется" in reply
    assert "добавится" in reply
    sandbox.say(member, "/cancel_autorenew")
    again = sandbox.wait_sent(member, 3)[2]["text"]
    assert "ещё проверяется" in again
    assert _subscription(bot_process, sub_id)["auto_renew"] is False


def test_autorenew_on_after_the_grace_ran_out_promises_no_charge(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """Soak finding: /autorenew_on just after the grace ran out (tsmonitor had not yet marked
    it expired) answered "switched on, the next charge soon" and switched it on; the card was
    then charged for a period that had begun three days before. The subscription is over
    (payments.entitlement) and no charge comes (recurrent_payments): the member is asked to
    pay, which saves the card again, and nothing is switched on."""
    member = _start(sandbox)
    sub_id = _autopaying(bot_process, member)
    now = datetime.now(UTC)
    bot_process.db.execute(
        "UPDATE subscriptions SET status = 'grace', current_period_start = ?,"
        " current_period_end = ?, grace_until = ?, auto_renew = ?,"
        " auto_renew_stopped_reason = 'user', next_charge_at = NULL WHERE id = ?",
        (
            now - timedelta(days=33, hours=1),
            now - timedelta(days=3, hours=1),
            now - timedelta(hours=1),
            False,
            sub_id,
        ),
    )
    sandbox.say(member, "/autorenew_on")
    reply = sandbox.wait_sent(member, 2)[1]["text"]
    assert "Автопродление включено" not in reply
    assert "/subscribe" in reply
    row = _subscription(bot_process, sub_id)
    assert row["auto_renew"] is False
    assert row["auto_renew_stopped_reason"] is None  # the next payment saves the card
