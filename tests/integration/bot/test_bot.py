"""The bot as a process against the sandbox process, on both backends."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

from monitors import texts
from services.sandbox import DEFAULT_BOT_TOKEN
from tests.integration.bot.conftest import (
    CONFIGURED_PAID_CHATS,
    DOMOS,
    ROOT,
    BotProcess,
    Sandbox,
    http_json,
    http_text,
    wait_for,
)
from tests.ports import free_port


def _rows(bot: BotProcess, sql: str, params: tuple[Any, ...] = (), db: str = "main") -> list[Any]:
    return bot.db.fetchall(sql, params, db=db)


def _user_id(bot: BotProcess, telegram_id: int) -> int:
    return int(bot.db.fetchval("SELECT id FROM users WHERE telegram_id = ?", (telegram_id,)))


def _tariff(bot: BotProcess) -> int:
    # One active tariff for every test of the module: /subscribe goes straight to the link.
    bot.db.execute(
        "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (code) DO NOTHING",
        ("month", "Месяц", 150000, 30),
    )
    return int(bot.db.fetchval("SELECT id FROM tariffs WHERE code = 'month'"))


def _activate(bot: BotProcess, telegram_id: int) -> int:
    user_id = _user_id(bot, telegram_id)
    now = datetime.now(UTC)
    bot.db.execute(
        "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
        " current_period_end) VALUES (?, ?, 'active', ?, ?)",
        (user_id, _tariff(bot), now - timedelta(days=1), now + timedelta(days=29)),
    )
    return user_id


def _start(sandbox: Sandbox, **profile: Any) -> int:
    telegram_id = sandbox.new_user(**profile)
    sandbox.say(telegram_id, "/start")
    sandbox.wait_sent(telegram_id, 1)
    return telegram_id


def test_start_registers_once(sandbox: Sandbox, bot_process: BotProcess) -> None:
    telegram_id = sandbox.new_user(username="agent_smith")
    sandbox.say(telegram_id, "/start")
    first = sandbox.wait_sent(telegram_id, 1)
    sandbox.say(telegram_id, "/start")
    both = sandbox.wait_sent(telegram_id, 2)

    assert "Вы зарегистрированы" in first[0]["text"]
    assert "С возвращением" in both[1]["text"]
    rows = _rows(bot_process, "SELECT * FROM users WHERE telegram_id = ?", (telegram_id,))
    assert len(rows) == 1
    assert rows[0]["username"] == "agent_smith"


def test_subscribe_commits_payment_and_reuses_open_link(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    _tariff(bot_process)
    telegram_id = _start(sandbox)
    sandbox.say(telegram_id, "/subscribe")
    reply = sandbox.wait_sent(telegram_id, 2)[1]["text"]
    sandbox.say(telegram_id, "/subscribe")
    again = sandbox.wait_sent(telegram_id, 3)[2]["text"]

    payments = _rows(
        bot_process,
        "SELECT * FROM payments WHERE user_id = ?",
        (_user_id(bot_process, telegram_id),),
    )
    assert len(payments) == 1, "a second /subscribe offers the same payment"
    payment = payments[0]
    assert payment["idempotence_key"].startswith("bot:")
    assert payment["status"] == "pending"
    assert payment["kind"] == "first"
    assert payment["amount_minor"] == 150000
    assert payment["confirmation_url"] in reply
    assert payment["confirmation_url"] in again
    assert "ещё действует" in again
    at_provider = [
        p
        for p in sandbox.control("GET", "/yookassa/payments")
        if p["id"] == payment["provider_payment_id"]
    ]
    assert len(at_provider) == 1
    assert at_provider[0]["amount"] == {"value": "1500.00", "currency": "RUB"}
    assert at_provider[0]["metadata"]["payment_row"] == str(payment["id"])
    # The request was committed with the row: a repeat (payment_monitor's) sends the same body.
    request = payment["metadata"]["provider_request"]
    assert request["metadata"] == at_provider[0]["metadata"]
    assert request["amount"] == at_provider[0]["amount"]
    assert request["confirmation"]["return_url"] == at_provider[0]["confirmation"]["return_url"]


def test_status_and_cancel_autorenew(sandbox: Sandbox, bot_process: BotProcess) -> None:
    telegram_id = _start(sandbox)
    sandbox.say(telegram_id, "/status")
    assert "нет подписки" in sandbox.wait_sent(telegram_id, 2)[1]["text"]

    user_id = _activate(bot_process, telegram_id)
    sandbox.say(telegram_id, "/status")
    assert "активна до" in sandbox.wait_sent(telegram_id, 3)[2]["text"]
    sandbox.say(telegram_id, "/cancel_autorenew")
    assert "Автопродление отключено" in sandbox.wait_sent(telegram_id, 4)[3]["text"]
    sandbox.say(telegram_id, "/cancel_autorenew")
    assert "уже выключено" in sandbox.wait_sent(telegram_id, 5)[4]["text"]

    sub = _rows(bot_process, "SELECT * FROM subscriptions WHERE user_id = ?", (user_id,))[0]
    assert sub["auto_renew"] is False
    assert sub["auto_renew_stopped_reason"] == "user"


def test_events_register_with_buttons(sandbox: Sandbox, bot_process: BotProcess) -> None:
    starts = datetime.now(UTC) + timedelta(days=3)
    event_id = bot_process.db.fetchval(
        "INSERT INTO events (title, starts_at, capacity) VALUES (?, ?, 1) RETURNING id",
        (f"Завтрак {starts.timestamp()}", starts),
    )
    member = _start(sandbox)
    _activate(bot_process, member)
    sandbox.say(member, "/events")
    listing = sandbox.wait_sent(member, 2)[1]
    buttons = [b for row in listing["reply_markup"]["inline_keyboard"] for b in row]
    button = next(b for b in buttons if b["callback_data"] == f"event:reg:{event_id}")

    query = sandbox.press(member, listing, button["callback_data"])
    assert "Вы зарегистрированы" in sandbox.wait_answer(query["id"])["text"]
    again = sandbox.press(member, listing, button["callback_data"])
    assert "уже зарегистрированы" in sandbox.wait_answer(again["id"])["text"]

    # The only seat is taken: the next member is told so; a member without subscription too.
    second = _start(sandbox)
    _activate(bot_process, second)
    sandbox.say(second, "/events")
    listing2 = sandbox.wait_sent(second, 2)[1]
    full = sandbox.press(second, listing2, f"event:reg:{event_id}")
    assert "больше нет" in sandbox.wait_answer(full["id"])["text"]
    outsider = _start(sandbox)
    sandbox.say(outsider, "/events")
    listing3 = sandbox.wait_sent(outsider, 2)[1]
    assert listing3["text"] == texts.EVENTS_FOR_MEMBERS  # no list for who never paid
    refused = sandbox.press(outsider, listing3, f"event:reg:{event_id}")
    assert "с подпиской" in sandbox.wait_answer(refused["id"])["text"]

    registrations = _rows(
        bot_process, "SELECT * FROM event_registrations WHERE event_id = ?", (event_id,)
    )
    assert [r["user_id"] for r in registrations] == [_user_id(bot_process, member)]


def test_monthly_survey_with_buttons_and_text(sandbox: Sandbox, bot_process: BotProcess) -> None:
    telegram_id = _start(sandbox)
    user_id = _activate(bot_process, telegram_id)
    sandbox.say(telegram_id, "/survey")
    first = sandbox.wait_sent(telegram_id, 2)[1]
    assert "Вопрос 1 из 3" in first["text"]
    options = [b for row in first["reply_markup"]["inline_keyboard"] for b in row]
    sandbox.wait_answer(sandbox.press(telegram_id, first, options[2]["callback_data"])["id"])
    second = sandbox.wait_sent(telegram_id, 3)[2]
    assert "Вопрос 2 из 3" in second["text"]
    # A button of the question already answered is stale and changes nothing.
    stale = sandbox.press(telegram_id, first, options[0]["callback_data"])
    assert "не актуален" in sandbox.wait_answer(stale["id"])["text"]
    five = [b for row in second["reply_markup"]["inline_keyboard"] for b in row][4]
    sandbox.press(telegram_id, second, five["callback_data"])
    assert "Вопрос 3 из 3" in sandbox.wait_sent(telegram_id, 4)[3]["text"]
    sandbox.say(telegram_id, "Больше встреч офлайн")
    assert "Спасибо" in sandbox.wait_sent(telegram_id, 5)[4]["text"]

    survey = _rows(bot_process, "SELECT * FROM surveys WHERE user_id = ?", (user_id,))[0]
    assert survey["status"] == "answered"
    answers = {
        r["question_key"]: r["answer"]
        for r in _rows(
            bot_process, "SELECT * FROM survey_responses WHERE survey_id = ?", (survey["id"],)
        )
    }
    assert answers == {"deals": "3–5", "satisfaction": "5", "suggestion": "Больше встреч офлайн"}
    sandbox.say(telegram_id, "/survey")
    assert "уже заполнена" in sandbox.wait_sent(telegram_id, 6)[5]["text"]


def test_the_monthly_invite_button_opens_the_survey(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """The invite as monthly_anket sends it (its text and keyboard, through the Bot API), and the
    member presses its button: the first question comes. Found from outside: the invite's button
    said `survey:<id>`, which the bot answered as a stale button."""
    telegram_id = _start(sandbox)
    user_id = _activate(bot_process, telegram_id)
    bot_process.db.execute(
        "INSERT INTO surveys (user_id, month, sent_at) VALUES (?, ?, ?)",
        (user_id, datetime.now(UTC).strftime("%Y-%m"), datetime.now(UTC)),
    )
    status, _ = http_json(
        "POST",
        f"{sandbox.base}/bot{DEFAULT_BOT_TOKEN}/sendMessage",
        {
            "chat_id": telegram_id,
            "text": texts.SURVEY_INVITE,
            "reply_markup": texts.survey_keyboard(),
        },
    )
    assert status == 200
    invite = sandbox.wait_sent(telegram_id, 2)[1]
    [[button]] = invite["reply_markup"]["inline_keyboard"]
    sandbox.wait_answer(sandbox.press(telegram_id, invite, button["callback_data"])["id"])
    assert "Вопрос 1 из 3" in sandbox.wait_sent(telegram_id, 3)[2]["text"]


def _paid_chat(bot: BotProcess, chat_id: int) -> None:
    """Marked paid as staff do in the admin (the action updates the row the bot made)."""
    bot.db.execute(
        "INSERT INTO chats (telegram_chat_id, kind, is_managed) VALUES (?, 'supergroup', ?)"
        " ON CONFLICT (telegram_chat_id) DO UPDATE SET is_managed = excluded.is_managed",
        (chat_id, True),
    )


def _members_once_decided(
    sandbox: Sandbox, chat_id: int, timeout_s: float = 10.0
) -> dict[int, str]:
    """Each member's status in the chat, once no join request to it is pending."""
    wait_for(
        lambda: not sandbox.control("GET", f"/telegram/join_requests?chat_id={chat_id}"),
        timeout_s,
        "the join requests to be decided",
    )
    return {
        m["user_id"]: m["status"]
        for m in sandbox.control("GET", f"/telegram/chats/{chat_id}/members")
    }


def _add_to_chat(sandbox: Sandbox, chat_id: int, telegram_id: int, by: int) -> None:
    """`by` adds the user to the chat (Telegram's "Add members")."""
    sandbox.control(
        "POST", f"/telegram/chats/{chat_id}/add", {"user_id": telegram_id, "added_by": by}
    )


def _status_in_chat(sandbox: Sandbox, chat_id: int, telegram_id: int) -> str | None:
    members = sandbox.control("GET", f"/telegram/chats/{chat_id}/members")
    return {m["user_id"]: m["status"] for m in members}.get(telegram_id)


def _new_paid_chat(sandbox: Sandbox, bot: BotProcess) -> int:
    """A supergroup in the sandbox (the bot its administrator), marked paid."""
    chat_id = -(1_000_000_000_000 + sandbox.new_user())
    sandbox.control(
        "POST", "/telegram/chats", {"id": chat_id, "type": "supergroup", "title": "Агенты PRO"}
    )
    _paid_chat(bot, chat_id)
    return chat_id


def test_configured_paid_chats_are_managed_from_the_start(bot_process: BotProcess) -> None:
    rows = _rows(bot_process, "SELECT telegram_chat_id, is_managed FROM chats")
    managed = {row["telegram_chat_id"] for row in rows if row["is_managed"]}
    assert managed >= set(CONFIGURED_PAID_CHATS)


def test_a_join_request_in_a_strangers_group_is_declined_and_never_makes_it_paid(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    chat_id = -(1_000_000_000_000 + sandbox.new_user())
    sandbox.control(
        "POST",
        "/telegram/chats",
        {"id": chat_id, "type": "supergroup", "title": "Скидки тут: t.me/+scam"},
    )
    member = _start(sandbox)
    _activate(bot_process, member)  # even a paying member: it is not our chat
    sandbox.control("POST", "/telegram/join_requests", {"user_id": member, "chat_id": chat_id})
    members = _members_once_decided(sandbox, chat_id)
    assert members.get(member) != "member"
    [chat] = _rows(bot_process, "SELECT * FROM chats WHERE telegram_chat_id = ?", (chat_id,))
    assert chat["is_managed"] is False
    wait_for(lambda: "join_request_outside_paid_chats" in bot_process.log_text(), 5, "the log line")
    # Nothing sent to the member on that chat's behalf: only the /start greeting.
    assert len(sandbox.sent(member)) == 1
    assert 'decision="not_a_paid_chat"' in http_text(
        f"http://127.0.0.1:{bot_process.metrics_port}/metrics"
    )


def test_status_gives_a_payer_outside_the_paid_chat_a_way_in(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """Found from outside: a payer whose receipt was dead-lettered (they had blocked the bot)
    got no link from /status and had no way in but asking staff. /status now gives a member who
    may be in the paid chat and is not a join-request link (the same one when asked again),
    which the bot approves; someone without a subscription gets none."""
    chat_id = _new_paid_chat(sandbox, bot_process)
    bot_process.db.execute(
        "UPDATE chats SET title = 'Агенты PRO' WHERE telegram_chat_id = ?", (chat_id,)
    )
    payer, lapsed = _start(sandbox), _start(sandbox)
    _activate(bot_process, payer)

    sandbox.say(payer, "/status")
    reply = sandbox.wait_sent(payer, 2)[1]["text"]
    assert "Вход в «Агенты PRO»: " in reply
    link = reply.split("Вход в «Агенты PRO»: ", 1)[1].split()[0]
    [made] = [
        x
        for x in sandbox.control("GET", f"/telegram/invite_links?chat_id={chat_id}")
        if x["invite_link"] == link
    ]
    assert made["creates_join_request"] is True
    sandbox.say(payer, "/status")
    assert link in sandbox.wait_sent(payer, 3)[2]["text"]  # not a second link

    sandbox.control("POST", "/telegram/invite_links/join", {"user_id": payer, "invite_link": link})
    members = _members_once_decided(sandbox, chat_id)
    assert members.get(payer) == "member"

    sandbox.say(lapsed, "/status")
    assert "Вход в" not in sandbox.wait_sent(lapsed, 2)[1]["text"]


def test_status_asks_telegram_when_the_record_says_in_the_chat(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """Soak finding: a payer left the paid chat while the bot could not hear it (the
    chat_member update was lost: the bot down past Telegram's 24 h). The records still said
    they were in, so /status gave them no way back and they had none but asking staff. /status
    asks Telegram about the chats the records say they are in, and records what it says."""
    chat_id = _new_paid_chat(sandbox, bot_process)
    bot_process.db.execute(
        "UPDATE chats SET title = 'Агенты ушедших' WHERE telegram_chat_id = ?", (chat_id,)
    )
    payer = _start(sandbox)
    user_id = _activate(bot_process, payer)
    chat_row = bot_process.db.fetchval(
        "SELECT id FROM chats WHERE telegram_chat_id = ?", (chat_id,)
    )
    bot_process.db.execute(
        "INSERT INTO memberships (user_id, chat_id, status) VALUES (?, ?, 'member')",
        (user_id, chat_row),
    )  # what the bot saw before; at Telegram the payer has left since

    sandbox.say(payer, "/status")
    reply = sandbox.wait_sent(payer, 2)[1]["text"]
    assert "Вход в «Агенты ушедших»: " in reply
    [status] = _rows(
        bot_process,
        "SELECT status FROM memberships WHERE user_id = ? AND chat_id = ?",
        (user_id, chat_row),
    )
    assert status["status"] == "left"
    link = reply.split("Вход в «Агенты ушедших»: ", 1)[1].split()[0]
    sandbox.control("POST", "/telegram/invite_links/join", {"user_id": payer, "invite_link": link})
    assert _members_once_decided(sandbox, chat_id).get(payer) == "member"

    # In the chat, as the records say: no link, and Telegram is asked again each time.
    sandbox.say(payer, "/status")
    assert "Агенты ушедших" not in sandbox.wait_sent(payer, 4)[3]["text"]


def test_join_requests_approved_only_for_live_subscriptions_and_staff(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    chat_id = _new_paid_chat(sandbox, bot_process)
    member = _start(sandbox)
    _activate(bot_process, member)
    stranger = _start(sandbox)
    staff = _start(sandbox)  # no subscription: staff are let in as they are never banned
    bot_process.db.execute("UPDATE users SET role = 'staff' WHERE telegram_id = ?", (staff,))

    for user in (member, stranger, staff):
        sandbox.control("POST", "/telegram/join_requests", {"user_id": user, "chat_id": chat_id})

    members = _members_once_decided(sandbox, chat_id)
    assert (members.get(member), members.get(staff)) == ("member", "member")
    assert members.get(stranger) != "member"
    assert "одобрена" in sandbox.wait_sent(member, 2)[1]["text"]
    assert "одобрена" in sandbox.wait_sent(staff, 2)[1]["text"]
    assert "/subscribe" in sandbox.wait_sent(stranger, 2)[1]["text"]

    chat = _rows(bot_process, "SELECT * FROM chats WHERE telegram_chat_id = ?", (chat_id,))[0]
    assert chat["is_managed"] is True
    memberships = _rows(bot_process, "SELECT * FROM memberships WHERE chat_id = ?", (chat["id"],))
    assert {(m["user_id"], m["status"]) for m in memberships} == {
        (_user_id(bot_process, member), "member"),
        (_user_id(bot_process, staff), "member"),
    }


def test_a_join_request_approved_through_telegram_failing_for_a_moment(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """The update is consumed once handled: an approval that met a 500 and was not made again
    would leave the payer's request pending for good."""
    chat_id = _new_paid_chat(sandbox, bot_process)
    payer = _start(sandbox)
    _activate(bot_process, payer)
    for mode in ("500", "429"):
        sandbox.control(
            "POST",
            "/faults",
            {"api": "telegram", "mode": mode, "count": 2, "method": "approveChatJoinRequest"},
        )
        sandbox.control("POST", "/telegram/join_requests", {"user_id": payer, "chat_id": chat_id})
        members = _members_once_decided(sandbox, chat_id, timeout_s=20)
        assert members.get(payer) == "member", mode
        assert sandbox.control("GET", "/faults") == {}  # both failures were met
        sandbox.control(
            "POST", f"/telegram/chats/{chat_id}/members", {"user_id": payer, "status": "left"}
        )
    assert bot_process.log_text().count('"telegram_call_retried"') >= 4


def test_strangers_in_a_paid_chat_are_removed_unless_an_admin_let_them_in(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    chat_id = _new_paid_chat(sandbox, bot_process)
    payer, stranger, friend, guest, subscriber, admin = (_start(sandbox) for _ in range(6))
    _activate(bot_process, payer)
    _activate(bot_process, subscriber)
    sandbox.control(
        "POST", f"/telegram/chats/{chat_id}/members", {"user_id": admin, "status": "administrator"}
    )

    def one_use_link() -> str:
        """A receipt's link as made before links asked to join (and by the legacy bot)."""
        status, body = http_json(
            "POST",
            f"{sandbox.base}/bot{DEFAULT_BOT_TOKEN}/createChatInviteLink",
            {"chat_id": chat_id, "member_limit": 1},
        )
        assert status == 200, body
        return str(body["result"]["invite_link"])

    def follow(telegram_id: int, link: str) -> None:
        sandbox.control(
            "POST", "/telegram/invite_links/join", {"user_id": telegram_id, "invite_link": link}
        )

    def add(telegram_id: int, by: int) -> None:
        _add_to_chat(sandbox, chat_id, telegram_id, by)

    def status(telegram_id: int) -> str | None:
        return _status_in_chat(sandbox, chat_id, telegram_id)

    def removed() -> float:
        text = http_text(f"http://127.0.0.1:{bot_process.metrics_port}/metrics")
        series = 'domos_bot_strangers_total{outcome="removed"}'
        [line] = [x for x in text.splitlines() if x.startswith(series)]
        return float(line.split()[-1])

    before = removed()
    # The payer's link, forwarded before the payer used it.
    follow(stranger, one_use_link())
    wait_for(lambda: status(stranger) == "left", 10, "the stranger to be removed")
    # The payer, in, adds a friend: members may add people unless the chat forbids it.
    follow(payer, one_use_link())
    add(friend, by=payer)
    wait_for(lambda: status(friend) == "left", 10, "the friend to be removed")
    assert not sandbox.control("GET", f"/telegram/bans?chat_id={chat_id}"), "free to come back"
    wait_for(lambda: removed() - before == 2, 5, "both removals to be counted")
    for removed_user in (stranger, friend):  # each told the way in: /start, then removed
        assert "/subscribe" in sandbox.wait_sent(removed_user, 2)[1]["text"]
    assert bot_process.log_text().count('"stranger_removed"') >= 2

    # An admin's guest, and anyone with a subscription, stay.
    add(guest, by=admin)
    follow(subscriber, one_use_link())
    members = "SELECT m.* FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.status = ?"
    in_chat = {payer, guest, subscriber}
    wait_for(
        lambda: (
            {r["user_id"] for r in _rows(bot_process, members, ("member",))}
            >= {_user_id(bot_process, t) for t in in_chat}
        ),
        10,
        "the three to be recorded as members",
    )
    assert [status(t) for t in (payer, guest, subscriber)] == ["member"] * 3
    assert removed() - before == 2
    assert "entrant_not_checked" not in bot_process.log_text()  # the admin was asked about


def test_inbox_stores_messages_channel_posts_and_voice(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    group_id = -(1_000_000_000_000 + sandbox.new_user())
    channel_id = -(1_000_000_000_000 + sandbox.new_user())
    sandbox.control("POST", "/telegram/chats", {"id": group_id, "type": "supergroup"})
    sandbox.control(
        "POST", "/telegram/chats", {"id": channel_id, "type": "channel", "title": "nmarket"}
    )
    author = sandbox.new_user(username="seller")
    said = sandbox.say(author, "Продаю 2к, #ипотека", chat_id=group_id)
    posted = sandbox.control(
        "POST", "/telegram/channel_posts", {"chat_id": channel_id, "text": "ЖК Лето, 1к 35 м²"}
    )
    voice = sandbox.control(
        "POST", "/telegram/voice", {"user_id": author, "chat_id": group_id, "duration": 7}
    )
    private_voice = sandbox.control("POST", "/telegram/voice", {"user_id": author, "size": 2048})

    def inbox() -> list[Any] | None:
        rows = _rows(
            bot_process,
            "SELECT * FROM chat_messages WHERE chat_id IN (?, ?, ?) ORDER BY id",
            (group_id, channel_id, author),
            db="useful",
        )
        return rows if len(rows) == 4 else None

    rows = wait_for(inbox, 10, "four inbox rows")
    by_message = {(r["chat_id"], r["message_id"]): r for r in rows}
    text_row = by_message[(group_id, said["message_id"])]
    assert (text_row["kind"], text_row["text"], text_row["from_username"]) == (
        "message",
        "Продаю 2к, #ипотека",
        "seller",
    )
    assert text_row["parse_status"] == "pending"
    assert text_row["raw"]["from"]["id"] == author
    assert by_message[(channel_id, posted["message_id"])]["kind"] == "channel_post"
    assert by_message[(group_id, voice["message_id"])]["kind"] == "voice"
    voice_row = by_message[(group_id, voice["message_id"])]
    assert voice_row["raw"]["voice"]["file_unique_id"] == voice["voice"]["file_unique_id"]
    private_row = by_message[(author, private_voice["message_id"])]
    assert private_row["kind"] == "voice"
    # The bot only fills the inbox: parse_messages alone keeps or refuses a file
    # (monitors.decisions.voice), whichever way the message arrived.
    assert not _rows(bot_process, "SELECT id FROM audio_files", db="audio")
    # The author has no subscription: told so, not that the note was kept.
    assert "только для участников" in sandbox.wait_sent(author, 1)[0]["text"]
    assert _rows(bot_process, "SELECT * FROM chats WHERE telegram_chat_id = ?", (channel_id,))


def test_unknown_input_gets_help_and_metrics_count_updates(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    telegram_id = sandbox.new_user()
    sandbox.say(telegram_id, "привет")
    sandbox.say(telegram_id, "/nonsense")
    replies = sandbox.wait_sent(telegram_id, 2)
    assert all("/subscribe" in m["text"] for m in replies)
    stale = sandbox.press(telegram_id, replies[0], "no-such-button")
    assert "устарела" in sandbox.wait_answer(stale["id"])["text"]

    metrics = http_text(f"http://127.0.0.1:{bot_process.metrics_port}/metrics")
    assert 'domos_bot_updates_total{type="message"}' in metrics
    assert 'domos_bot_updates_total{type="callback_query"}' in metrics
    assert bot_process.process is not None
    assert bot_process.process.poll() is None


def test_sigterm_stops_cleanly_and_survey_resumes_after_restart(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    telegram_id = _start(sandbox)
    _activate(bot_process, telegram_id)
    sandbox.say(telegram_id, "/survey")
    first = sandbox.wait_sent(telegram_id, 2)[1]
    option = first["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    sandbox.press(telegram_id, first, option)
    sandbox.wait_sent(telegram_id, 3)

    assert bot_process.stop() == 0
    assert "bot_stopped" in bot_process.log_text()
    bot_process.start()

    # The member goes on with question 2 after the restart: the state was in the database.
    sandbox.say(telegram_id, "/survey")
    resumed = sandbox.wait_sent(telegram_id, 4)[3]
    assert "Вопрос 2 из 3" in resumed["text"]


def test_a_members_private_voice_note_is_acknowledged(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    member = _start(sandbox)
    _activate(bot_process, member)
    sandbox.control("POST", "/telegram/voice", {"user_id": member, "size": 2048})
    assert "сохранено" in sandbox.wait_sent(member, 2)[1]["text"]


def test_unblocking_the_bot_makes_the_member_reachable_again(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """A member who unblocks the bot without writing to it: Telegram's my_chat_member update
    is all the bot hears, and the relay and the monitors skip an unreachable member for good."""
    member = _start(sandbox)

    def reachable() -> bool:
        return bool(
            bot_process.db.fetchval(
                "SELECT is_reachable FROM users WHERE telegram_id = ?", (member,)
            )
        )

    sandbox.control("POST", f"/telegram/users/{member}/block")
    wait_for(lambda: not reachable(), 10, "the block to be recorded")
    blocked_at = bot_process.db.fetchval(
        "SELECT blocked_at FROM users WHERE telegram_id = ?", (member,)
    )
    assert blocked_at is not None
    sandbox.control("POST", f"/telegram/users/{member}/unblock")
    wait_for(reachable, 10, "the unblock to be recorded")
    assert (
        bot_process.db.fetchval("SELECT blocked_at FROM users WHERE telegram_id = ?", (member,))
        is None
    )


def _set_bot_status(sandbox: Sandbox, chat_id: int, status: str) -> None:
    bot_id = int(DEFAULT_BOT_TOKEN.partition(":")[0])
    sandbox.control(
        "POST", f"/telegram/chats/{chat_id}/members", {"user_id": bot_id, "status": status}
    )


def _ban_monitor_once(bot: BotProcess) -> None:
    environ = {**bot.environ, "DOMOS_PROGRAM": "ban_monitor", "METRICS_PORT": str(free_port())}
    done = subprocess.run(
        [*DOMOS, "monitor", "ban_monitor", "--once"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]


def test_a_payers_join_request_the_bot_could_not_approve_is_approved_later(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """The bot demoted when a payer asks to join: Telegram refuses the approval. The request
    is recorded, the payer told to wait, and ban_monitor approves it once the bot can."""
    chat_id = _new_paid_chat(sandbox, bot_process)
    payer = _start(sandbox)
    user_id = _activate(bot_process, payer)
    _set_bot_status(sandbox, chat_id, "member")
    sandbox.control("POST", "/telegram/join_requests", {"user_id": payer, "chat_id": chat_id})

    membership = (
        "SELECT m.status FROM memberships m JOIN chats c ON c.id = m.chat_id"
        " WHERE m.user_id = ? AND c.telegram_chat_id = ?"
    )

    def recorded() -> str | None:
        rows = _rows(bot_process, membership, (user_id, chat_id))
        return str(rows[0]["status"]) if rows else None

    wait_for(lambda: recorded() == "requested", 10, "the pending approval to be recorded")
    assert "не смог одобрить" in sandbox.wait_sent(payer, 2)[1]["text"]
    assert sandbox.control("GET", f"/telegram/join_requests?chat_id={chat_id}")  # still pending

    _set_bot_status(sandbox, chat_id, "administrator")
    bot_process.db.execute(  # as if the retry delay had passed
        "UPDATE memberships SET updated_at = ? WHERE user_id = ?",
        (datetime.now(UTC) - timedelta(hours=1), user_id),
    )
    _ban_monitor_once(bot_process)
    members = sandbox.control("GET", f"/telegram/chats/{chat_id}/members")
    assert {m["user_id"]: m["status"] for m in members}.get(payer) == "member"
    assert recorded() == "member"
    [told] = _rows(
        bot_process, "SELECT text FROM outbox WHERE chat_id = ? AND kind = 'join_request'", (payer,)
    )
    assert "одобрена" in told["text"]


def test_strangers_the_bot_could_not_remove_or_check_are_removed_by_ban_monitor(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """A stranger let in while the bot is demoted, or while Telegram will not say who let them
    in, is recorded for removal: ban_monitor removes them once it can, and leaves an admin's
    guest where they are."""
    chat_id = _new_paid_chat(sandbox, bot_process)
    payer, admin = _start(sandbox), _start(sandbox)
    _activate(bot_process, payer)
    stranger, unchecked, guest = (sandbox.new_user() for _ in range(3))  # never wrote to the bot
    for telegram_id, role in ((payer, "member"), (admin, "administrator")):
        sandbox.control(
            "POST", f"/telegram/chats/{chat_id}/members", {"user_id": telegram_id, "status": role}
        )

    def add(telegram_id: int, by: int) -> None:
        _add_to_chat(sandbox, chat_id, telegram_id, by)

    def status(telegram_id: int) -> str | None:
        return _status_in_chat(sandbox, chat_id, telegram_id)

    def recorded(telegram_id: int) -> list[Any]:
        return _rows(
            bot_process,
            "SELECT a.* FROM moderation_actions a JOIN users u ON u.id = a.user_id"
            " WHERE u.telegram_id = ? ORDER BY a.id",
            (telegram_id,),
        )

    # Repro A: the bot demoted when a member adds someone.
    _set_bot_status(sandbox, chat_id, "member")
    add(stranger, by=payer)
    wait_for(lambda: recorded(stranger), 10, "the stranger's removal to be recorded")
    _set_bot_status(sandbox, chat_id, "administrator")
    # Repro B: Telegram fails every getChatMember of the bot's admin check.
    sandbox.control(
        "POST",
        "/faults",
        {"api": "telegram", "mode": "500", "count": 50, "method": "getChatMember"},
    )
    add(unchecked, by=payer)
    add(guest, by=admin)
    wait_for(lambda: recorded(unchecked) and recorded(guest), 30, "both entrants recorded")
    sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 0})
    assert [status(t) for t in (stranger, unchecked, guest)] == ["member"] * 3

    _ban_monitor_once(bot_process)
    assert [status(t) for t in (stranger, unchecked, guest)] == ["kicked", "kicked", "member"]
    assert [a["status"] for a in recorded(stranger) + recorded(unchecked)] == ["done", "done"]
    [kept] = recorded(guest)
    assert (kept["status"], kept["last_error"]) == ("failed", "superseded: let in by an admin")
    assert status(payer) == "member"


def test_a_paid_group_upgraded_to_a_supergroup_stays_paid_under_its_new_id(
    sandbox: Sandbox, bot_process: BotProcess
) -> None:
    """Telegram gives an upgraded group a new id and tells the bot with two service messages;
    the paid chat, its members and the checks at its door follow."""
    old_id = -(4_000_000_000 + sandbox.new_user() % 1_000_000_000)
    sandbox.control("POST", "/telegram/chats", {"id": old_id, "type": "group", "title": "Клуб"})
    _paid_chat(bot_process, old_id)
    payer, stranger = _start(sandbox), _start(sandbox)
    _activate(bot_process, payer)
    sandbox.control(
        "POST", f"/telegram/chats/{old_id}/members", {"user_id": payer, "status": "member"}
    )
    payer_id = _user_id(bot_process, payer)
    bot_process.db.execute(
        "INSERT INTO memberships (user_id, chat_id, status) SELECT ?, id, 'member' FROM chats"
        " WHERE telegram_chat_id = ?",
        (payer_id, old_id),
    )

    new_id = sandbox.control("POST", f"/telegram/chats/{old_id}/migrate", {"by": payer})["id"]

    def chat(telegram_chat_id: int) -> Any:
        rows = _rows(
            bot_process, "SELECT * FROM chats WHERE telegram_chat_id = ?", (telegram_chat_id,)
        )
        return rows[0] if rows else None

    wait_for(lambda: chat(new_id) and chat(new_id)["is_managed"], 10, "the new id to be paid")
    wait_for(lambda: "paid_chat_migrated" in bot_process.log_text(), 5, "the warning")
    old = chat(old_id)
    assert old is None or not old["is_managed"]
    [moved] = _rows(
        bot_process,
        "SELECT status FROM memberships WHERE user_id = ? AND chat_id = ?",
        (payer_id, chat(new_id)["id"]),
    )
    assert moved["status"] == "member"

    # The door of the new chat: a stranger added there is removed.
    sandbox.control(
        "POST", f"/telegram/chats/{new_id}/add", {"user_id": stranger, "added_by": payer}
    )
    members = f"/telegram/chats/{new_id}/members"
    wait_for(
        lambda: (
            {m["user_id"]: m["status"] for m in sandbox.control("GET", members)}.get(stranger)
            == "left"
        ),
        10,
        "the stranger to be removed",
    )

    # A restart with PAID_CHAT_IDS not yet updated flips nothing back.
    bot_process.stop()
    bot_process.environ["PAID_CHAT_IDS"] += f",{old_id}"
    try:
        bot_process.start()
        assert chat(new_id)["is_managed"]
    finally:
        bot_process.environ["PAID_CHAT_IDS"] = ",".join(str(c) for c in CONFIGURED_PAID_CHATS)


def test_a_grace_that_ran_out_entitles_no_one(sandbox: Sandbox, bot_process: BotProcess) -> None:
    """A subscription still marked 'grace' past its grace_until (tsmonitor has not ticked yet)
    no longer entitles: the bot decides as ban_monitor and join_approvals do."""
    chat_id = _new_paid_chat(sandbox, bot_process)
    tariff_id = _tariff(bot_process)
    now = datetime.now(UTC)
    ran_out, in_grace = _start(sandbox), _start(sandbox)
    for telegram_id, grace_until in (
        (ran_out, now - timedelta(minutes=1)),
        (in_grace, now + timedelta(days=1)),
    ):
        bot_process.db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end, grace_until) VALUES (?, ?, 'grace', ?, ?, ?)",
            (
                _user_id(bot_process, telegram_id),
                tariff_id,
                now - timedelta(days=33),
                now - timedelta(days=3),
                grace_until,
            ),
        )
        sandbox.control(
            "POST", "/telegram/join_requests", {"user_id": telegram_id, "chat_id": chat_id}
        )

    members = _members_once_decided(sandbox, chat_id)
    assert members.get(in_grace) == "member"
    assert members.get(ran_out) != "member"
    assert "/subscribe" in sandbox.wait_sent(ran_out, 2)[1]["text"]
    # Nor are the members-only commands open to it.
    sandbox.say(ran_out, "/survey")
    assert "с подпиской" in sandbox.wait_sent(ran_out, 3)[2]["text"]
