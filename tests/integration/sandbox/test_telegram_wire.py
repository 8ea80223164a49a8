"""Bot API wire format: request forms, envelopes and error texts as Telegram sends them."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.integration.sandbox.conftest import Sandbox


async def test_get_me_envelope(sandbox: Sandbox) -> None:
    status, body = await sandbox.raw("GET", "getMe")
    assert status == 200
    assert body["ok"] is True
    assert body["result"]["id"] == 123456789
    assert body["result"]["is_bot"] is True
    assert body["result"]["username"] == "sandbox_123456789_bot"


async def test_unknown_token_is_401(sandbox: Sandbox) -> None:
    async with sandbox.http.get(f"{sandbox.base}/bot1:wrong/getMe") as resp:
        assert resp.status == 401
        assert await resp.json() == {
            "ok": False,
            "error_code": 401,
            "description": "Unauthorized",
        }


async def test_unknown_method_is_404(sandbox: Sandbox) -> None:
    status, body = await sandbox.raw("POST", "sendTelepathy")
    assert status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found"}


async def test_method_names_are_case_insensitive(sandbox: Sandbox) -> None:
    for name in ("getme", "GETME", "GetMe"):
        status, body = await sandbox.raw("GET", name)
        assert (status, body["ok"]) == (200, True)


@pytest.mark.parametrize("form", ["query", "urlencoded", "json", "multipart"])
async def test_send_message_in_every_request_form(sandbox: Sandbox, form: str) -> None:
    await sandbox.control("POST", "/telegram/users", {"user_id": 7, "first_name": "Ann"})
    fields = {"chat_id": "7", "text": f"hello via {form}"}
    markup = {"inline_keyboard": [[{"text": "Pay", "callback_data": "pay"}]]}
    if form == "query":
        status, body = await sandbox.raw("GET", "sendMessage", params=fields)
    elif form == "urlencoded":
        fields["reply_markup"] = json.dumps(markup)
        status, body = await sandbox.raw("POST", "sendMessage", data=fields)
    elif form == "json":
        status, body = await sandbox.raw(
            "POST",
            "sendMessage",
            json={"chat_id": 7, "text": fields["text"], "reply_markup": markup},
        )
    else:
        data = aiohttp.FormData()
        data.add_field("chat_id", "7")
        data.add_field("text", fields["text"])
        data.add_field("reply_markup", json.dumps(markup))
        data.add_field("unused_file", b"x", filename="x.bin")  # forces multipart/form-data
        status, body = await sandbox.raw("POST", "sendMessage", data=data)
    assert status == 200, body
    message = body["result"]
    assert message["text"] == f"hello via {form}"
    assert message["chat"] == {"id": 7, "type": "private", "first_name": "Ann"}
    assert message["from"]["is_bot"] is True
    assert isinstance(message["date"], int)
    if form != "query":
        assert message["reply_markup"] == markup


async def test_bad_requests_use_telegram_texts(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/telegram/users", {"user_id": 7})
    cases = [
        ({"chat_id": 7}, "Bad Request: message text is empty"),
        ({"chat_id": 7, "text": "   "}, "Bad Request: message text is empty"),
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
        ({"chat_id": 999, "text": "hi"}, "Bad Request: chat not found"),
        ({"chat_id": "abc", "text": "hi"}, "Bad Request: chat not found"),
        ({"chat_id": 7, "text": "x" * 4097}, "Bad Request: message is too long"),
        (
            {"chat_id": 7, "text": "<b>open", "parse_mode": "HTML"},
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag "
            '"b"',
        ),
        (
            {"chat_id": 7, "text": "hi", "reply_markup": "{not json"},
            "Bad Request: can't parse reply keyboard markup JSON object",
        ),
    ]
    for fields, description in cases:
        status, body = await sandbox.raw("POST", "sendMessage", data=fields)
        assert status == 400, fields
        assert body == {"ok": False, "error_code": 400, "description": description}


async def test_wrong_types_never_give_500(sandbox: Sandbox) -> None:
    bad_payloads = [
        ("getUpdates", {"offset": "zero"}),
        ("getUpdates", {"allowed_updates": "[oops"}),
        ("banChatMember", {"chat_id": -100, "user_id": "me"}),
        ("getFile", {}),
        ("setMyCommands", {"commands": '[{"command": "Bad Command", "description": "x"}]'}),
        ("sendDocument", {"chat_id": 1}),
        ("answerCallbackQuery", {"callback_query_id": "nope"}),
        ("createChatInviteLink", {"chat_id": "x"}),
    ]
    for method, fields in bad_payloads:
        status, body = await sandbox.raw("POST", method, data=fields)
        assert status == 400, (method, body)
        assert body["description"].startswith("Bad Request: "), body


async def test_json_body_with_native_types(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/telegram/users", {"user_id": 7})
    status, body = await sandbox.raw(
        "POST",
        "sendMessage",
        json={"chat_id": 7, "text": "<i>x</i> &amp; y", "parse_mode": "HTML"},
    )
    assert status == 200
    assert body["result"]["text"] == "x & y"
    assert body["result"]["entities"] == [{"type": "italic", "offset": 0, "length": 1}]


async def test_telegram_fault_injection_gives_500_then_recovers(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "500", "count": 2})
    for _ in range(2):
        status, body = await sandbox.raw("GET", "getMe")
        assert status == 500
        assert body["ok"] is False
    status, _ = await sandbox.raw("GET", "getMe")
    assert status == 200


async def test_telegram_fault_injection_gives_429_with_retry_after(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "429", "count": 1})
    status, body = await sandbox.raw("GET", "getMe")
    assert (status, body["error_code"], body["parameters"]) == (429, 429, {"retry_after": 1})
    status, _ = await sandbox.raw("GET", "getMe")
    assert status == 200


async def test_telegram_fault_injection_of_one_method(sandbox: Sandbox) -> None:
    await sandbox.control(
        "POST", "/faults", {"api": "telegram", "mode": "500", "count": 1, "method": "getme"}
    )
    status, _ = await sandbox.raw("POST", "getUpdates")
    assert status == 200  # another method goes through
    status, _ = await sandbox.raw("GET", "getMe")
    assert status == 500
    status, _ = await sandbox.raw("GET", "getMe")
    assert status == 200
    status, body = await sandbox.control_error(
        "POST", "/faults", {"api": "yookassa", "mode": "500", "method": "getMe"}
    )
    assert (status, body["error"]) == (400, "method: a Bot API method name, for api telegram only")


async def test_telegram_timeout_fault_processes_the_call_then_holds_the_answer(
    sandbox: Sandbox,
) -> None:
    """As docs/sandbox.md says: the message is delivered, only the answer comes too late; a
    client that gives up and sends again makes a second copy (sendMessage has no key)."""
    await sandbox.control("POST", "/telegram/users", {"user_id": 7})
    await sandbox.control(
        "POST",
        "/faults",
        {"api": "telegram", "mode": "timeout", "count": 1, "method": "sendMessage"},
    )
    params = {"chat_id": 7, "text": "late"}
    with pytest.raises(TimeoutError):
        await sandbox.raw(
            "POST", "sendMessage", json=params, timeout=aiohttp.ClientTimeout(total=0.2)
        )
    assert [m["text"] for m in await sandbox.control("GET", "/telegram/sent?chat_id=7")] == ["late"]
    status, body = await sandbox.raw("POST", "sendMessage", json=params)
    assert (status, body["ok"]) == (200, True)
    assert len(await sandbox.control("GET", "/telegram/sent?chat_id=7")) == 2


async def test_telegram_timeout_fault_holds_an_error_answer_too(sandbox: Sandbox) -> None:
    await sandbox.control("POST", "/faults", {"api": "telegram", "mode": "timeout", "count": 1})
    started = asyncio.get_running_loop().time()
    status, body = await sandbox.raw("POST", "sendMessage", json={"chat_id": 999, "text": "x"})
    # The call was processed (Telegram's own refusal), answered after delay_s (0.5 s here).
    assert (status, body["description"]) == (400, "Bad Request: chat not found")
    assert asyncio.get_running_loop().time() - started >= 0.5
