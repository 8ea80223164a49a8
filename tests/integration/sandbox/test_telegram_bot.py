"""aiogram 3 against the sandbox: typed results and typed errors, unchanged client code."""

from __future__ import annotations

import asyncio
import struct
import time
import zlib

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
)

from tests.integration.sandbox.conftest import Sandbox


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\x80" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def test_bot_receives_typed_updates_and_confirms_with_offset(
    sandbox: Sandbox, bot: Bot
) -> None:
    await sandbox.control("POST", "/telegram/messages", {"user_id": 42, "text": "/start ref1"})
    await sandbox.control("POST", "/telegram/messages", {"user_id": 42, "text": "hello"})
    updates = await bot.get_updates()
    assert [u.update_id for u in updates] == [1, 2]
    first = updates[0].message
    assert first is not None
    assert first.text == "/start ref1"
    assert first.from_user is not None
    assert first.from_user.id == 42
    assert first.entities is not None
    assert first.entities[0].type == "bot_command"
    assert first.entities[0].length == len("/start")
    # offset = last id + 1 confirms everything before it.
    assert await bot.get_updates(offset=3) == []
    assert await bot.get_updates() == []


async def test_long_poll_waits_then_returns_early_on_new_update(sandbox: Sandbox, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert 0.9 <= time.monotonic() - started < 1.8

    async def inject() -> None:
        await asyncio.sleep(0.2)
        await sandbox.control("POST", "/telegram/messages", {"user_id": 5, "text": "ping"})

    started = time.monotonic()
    task = asyncio.create_task(inject())
    updates = await bot.get_updates(timeout=5)
    await task
    assert len(updates) == 1
    assert time.monotonic() - started < 1.0


async def test_second_poll_terminates_the_first_with_409(sandbox: Sandbox, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    status, _body = await sandbox.raw("GET", "getUpdates", params={"timeout": "0"})
    assert status == 200
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates request"):
        await first


async def test_allowed_updates_filters_kinds(sandbox: Sandbox, bot: Bot) -> None:
    await bot.get_updates(allowed_updates=["callback_query"])
    await sandbox.control("POST", "/telegram/messages", {"user_id": 5, "text": "ignored"})
    assert await bot.get_updates() == []


async def test_send_message_and_list_sent_by_chat(sandbox: Sandbox, bot: Bot) -> None:
    for user_id in (1, 2):
        await sandbox.control("POST", "/telegram/users", {"user_id": user_id})
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Pay", callback_data="pay:1")]]
    )
    message = await bot.send_message(1, "<b>Hi</b>, Ann", parse_mode="HTML", reply_markup=markup)
    assert message.text == "Hi, Ann"
    assert message.entities is not None
    assert message.entities[0].type == "bold"
    assert message.reply_markup is not None
    assert message.reply_markup.inline_keyboard[0][0].callback_data == "pay:1"
    await bot.send_message(2, "Hi, Bob")
    sent = await sandbox.control("GET", "/telegram/sent?chat_id=1")
    assert [m["text"] for m in sent] == ["Hi, Ann"]
    assert len(await sandbox.control("GET", "/telegram/sent")) == 2


async def test_unknown_token_raises_unauthorized(sandbox: Sandbox) -> None:
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    stranger = Bot(
        "42:not-a-known-token",
        session=AiohttpSession(api=TelegramAPIServer.from_base(sandbox.base)),
    )
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()


async def test_blocked_user_gives_403_and_my_chat_member(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control("POST", "/telegram/messages", {"user_id": 9, "text": "/start"})
    await sandbox.control("POST", "/telegram/users/9/block")
    with pytest.raises(TelegramForbiddenError) as caught:
        await bot.send_message(9, "renewal reminder")
    assert caught.value.message == "Forbidden: bot was blocked by the user"
    updates = await bot.get_updates()
    change = updates[-1].my_chat_member
    assert change is not None
    assert change.new_chat_member.status == "kicked"
    await sandbox.control("POST", "/telegram/users/9/unblock")
    assert (await bot.send_message(9, "welcome back")).text == "welcome back"


async def test_flood_limit_per_chat_gives_retry_after(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control(
        "PUT", "/telegram/limits", {"enabled": True, "per_chat_per_s": 1, "per_chat_burst": 3}
    )
    await sandbox.control("POST", "/telegram/users", {"user_id": 3})
    for i in range(3):
        await bot.send_message(3, f"burst {i}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(3, "one too many")
    assert caught.value.retry_after == 1
    status, body = await sandbox.raw("POST", "sendMessage", data={"chat_id": 3, "text": "x"})
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 1",
        "parameters": {"retry_after": 1},
    }
    sandbox.clock.advance(1.0)
    assert (await bot.send_message(3, "after the pause")).text == "after the pause"


async def test_flood_limit_per_group_per_minute(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control(
        "PUT",
        "/telegram/limits",
        {"enabled": True, "per_chat_per_s": 0, "per_group_per_min": 20, "per_group_burst": 20},
    )
    await sandbox.control("POST", "/telegram/chats", {"id": -1001, "type": "supergroup"})
    for i in range(20):
        await bot.send_message(-1001, f"announcement {i}")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(-1001, "21st")
    assert caught.value.retry_after == 3  # one message per 3 s refills


async def test_webhook_delivery_with_secret_and_retries(
    sandbox: Sandbox, bot: Bot, receiver
) -> None:
    receiver.fail_first = 2
    assert await bot.set_webhook(receiver.url, secret_token="s3cret_token")
    with pytest.raises(TelegramConflictError) as caught:
        await bot.get_updates()
    assert caught.value.message == (
        "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
        "delete the webhook first"
    )
    await sandbox.control("POST", "/telegram/messages", {"user_id": 8, "text": "via webhook"})
    for _ in range(100):
        if len(receiver.calls) >= 3:
            break
        await asyncio.sleep(0.02)
    assert len(receiver.calls) == 3
    headers, update = receiver.calls[-1]
    assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret_token"
    assert update["update_id"] == 1
    assert update["message"]["text"] == "via webhook"
    info = await bot.get_webhook_info()
    assert info.url == receiver.url
    assert info.pending_update_count == 0
    assert info.last_error_message == "Wrong response from the webhook: 500"
    deliveries = await sandbox.control("GET", "/webhooks?api=telegram")
    assert [d["status"] for d in deliveries] == [500, 500, 200]
    assert await bot.delete_webhook()
    assert await bot.get_updates() == []


async def test_files_upload_get_file_and_download(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control("POST", "/telegram/users", {"user_id": 4})
    content = b"%PDF-1.4 receipt"
    message = await bot.send_document(4, BufferedInputFile(content, filename="receipt.pdf"))
    document = message.document
    assert document is not None
    assert document.file_name == "receipt.pdf"
    assert document.file_size == len(content)
    file = await bot.get_file(document.file_id)
    assert file.file_path is not None
    assert file.file_path.endswith(".pdf")
    downloaded = await bot.download(file)
    assert downloaded is not None
    assert downloaded.read() == content
    # A known file_id can be sent again without uploading.
    again = await bot.send_document(4, document.file_id)
    assert again.document is not None
    assert again.document.file_unique_id == document.file_unique_id

    photo = await bot.send_photo(4, BufferedInputFile(png(64, 32), filename="p.png"))
    assert photo.photo is not None
    assert (photo.photo[-1].width, photo.photo[-1].height) == (64, 32)

    with pytest.raises(TelegramBadRequest, match="wrong file identifier/HTTP URL specified"):
        await bot.send_document(4, "no-such-file-id")


async def test_voice_note_download_and_size_limit(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control(
        "POST", "/telegram/voice", {"user_id": 6, "duration": 7, "content_b64": "T2dnUwABAg=="}
    )
    await sandbox.control("POST", "/telegram/voice", {"user_id": 6, "size": 21 * 1024 * 1024})
    small, big = await bot.get_updates()
    voice = small.message.voice
    assert voice is not None
    assert voice.duration == 7
    assert voice.mime_type == "audio/ogg"
    file = await bot.get_file(voice.file_id)
    data = await bot.download(file)
    assert data is not None
    assert data.read() == b"OggS\x00\x01\x02"
    assert big.message.voice is not None
    with pytest.raises(TelegramBadRequest) as caught:
        await bot.get_file(big.message.voice.file_id)
    assert caught.value.message == "Bad Request: file is too big"


async def test_callback_query_answer_and_edit(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control("POST", "/telegram/users", {"user_id": 11})
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="survey:yes")]]
    )
    sent = await bot.send_message(11, "Did you close a deal?", reply_markup=markup)
    await sandbox.control(
        "POST",
        "/telegram/callback_queries",
        {"user_id": 11, "message_id": sent.message_id, "data": "survey:yes"},
    )
    (update,) = await bot.get_updates()
    query = update.callback_query
    assert query is not None
    assert query.data == "survey:yes"
    assert query.message is not None
    assert query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="Thanks!")
    with pytest.raises(TelegramBadRequest, match="query is too old"):
        await bot.answer_callback_query(query.id)
    answers = await sandbox.control("GET", "/telegram/callback_answers")
    assert answers[0]["text"] == "Thanks!"

    edited = await bot.edit_message_text("Thanks, noted", chat_id=11, message_id=sent.message_id)
    assert edited.text == "Thanks, noted"
    assert edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("Thanks, noted", chat_id=11, message_id=sent.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=11, message_id=999)


async def test_commands_round_trip(bot: Bot) -> None:
    commands = [
        BotCommand(command="start", description="Start"),
        BotCommand(command="status", description="My subscription"),
    ]
    assert await bot.set_my_commands(commands)
    got = await bot.get_my_commands()
    assert [(c.command, c.description) for c in got] == [
        ("start", "Start"),
        ("status", "My subscription"),
    ]


async def test_channel_post_update(sandbox: Sandbox, bot: Bot) -> None:
    await sandbox.control(
        "POST", "/telegram/chats", {"id": -1002, "type": "channel", "title": "nmarket"}
    )
    await sandbox.control(
        "POST", "/telegram/channel_posts", {"chat_id": -1002, "text": "ЖК Север, 2к, 9.5 млн"}
    )
    (update,) = await bot.get_updates()
    post = update.channel_post
    assert post is not None
    assert post.chat.type == "channel"
    assert post.sender_chat is not None
    assert post.sender_chat.id == -1002
    assert post.text == "ЖК Север, 2к, 9.5 млн"
