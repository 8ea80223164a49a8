"""Bot methods that send or change messages, files, callback answers and commands."""

from __future__ import annotations

import re
from typing import Any

from services.sandbox.telegram.errors import BOT_BLOCKED, bad_request, forbidden
from services.sandbox.telegram.files import file_api, image_size, input_file
from services.sandbox.telegram.formatting import format_text, utf16_len
from services.sandbox.telegram.params import Params, Upload
from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import BotState, Chat, StoredFile

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")


async def get_me(svc: TelegramService, bot: BotState, params: Params) -> Any:
    return {
        **bot.user.to_api(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def _reply_markup(params: Params) -> Any:
    markup = params.json_value("reply_markup", "can't parse reply keyboard markup JSON object")
    if markup is not None and not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if markup and "inline_keyboard" in markup:
        keyboard = markup["inline_keyboard"]
        if not isinstance(keyboard, list) or not all(isinstance(row, list) for row in keyboard):
            raise bad_request(
                'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
            )
        for row in keyboard:
            for button in row:
                if not isinstance(button, dict) or not button.get("text"):
                    raise bad_request("text buttons are unallowed in the inline keyboard")
    return markup


def _entities(params: Params, field: str) -> list[dict[str, Any]] | None:
    value = params.json_value(field, f"can't parse {field} JSON object")
    if value is not None and not isinstance(value, list):
        raise bad_request(f"can't parse {field} JSON object")
    return value


def _record(
    svc: TelegramService, bot: BotState, chat: Chat, content: dict[str, Any], markup: Any
) -> dict[str, Any]:
    world = svc.world
    message: dict[str, Any] = {
        "message_id": world.new_message_id(chat.id),
        "from": bot.user.to_api(),
        "chat": chat.to_api(),
        "date": svc.clock.now_int(),
    }
    if chat.type == "channel":
        message["sender_chat"] = chat.to_api()
    message.update(content)
    # Only inline keyboards are echoed back in the Message object.
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        message["reply_markup"] = {"inline_keyboard": markup["inline_keyboard"]}
    world.messages[(chat.id, message["message_id"])] = message
    world.sent.append((bot.id, message))
    return message


def _text_content(params: Params, field: str, limit: int, too_long: str) -> dict[str, Any]:
    raw = params.text(field) or ""
    text, entities = format_text(raw, params.text("parse_mode"))
    explicit = _entities(params, "entities" if field == "text" else "caption_entities")
    if utf16_len(text) > limit:
        raise bad_request(too_long)
    content: dict[str, Any] = {field: text} if text else {}
    if explicit:
        entities = explicit
    if entities:
        content["entities" if field == "text" else "caption_entities"] = entities
    return content


async def send_message(svc: TelegramService, bot: BotState, params: Params) -> Any:
    params.chat_id()
    raw = params.text("text")
    if raw is None or not raw.strip():
        raise bad_request("message text is empty")
    content = _text_content(params, "text", MAX_TEXT_LENGTH, "message is too long")
    if "text" not in content:
        raise bad_request("message text is empty")
    markup = _reply_markup(params)
    chat = svc.require_chat(params)
    svc.check_can_send(bot, chat)
    return _record(svc, bot, chat, content, markup)


async def edit_message_text(svc: TelegramService, bot: BotState, params: Params) -> Any:
    if params.has("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    raw = params.text("text")
    if raw is None or not raw.strip():
        raise bad_request("message text is empty")
    content = _text_content(params, "text", MAX_TEXT_LENGTH, "MESSAGE_TOO_LONG")
    markup = _reply_markup(params)
    chat = svc.require_chat(params)
    message_id = params.integer("message_id", empty_error="message identifier is not specified")
    assert message_id is not None
    message = svc.world.messages.get((chat.id, message_id))
    if message is None:
        raise bad_request("message to edit not found")
    if message.get("from", {}).get("id") != bot.id or "text" not in message:
        raise bad_request("message can't be edited")
    new_markup = (
        {"inline_keyboard": markup["inline_keyboard"]}
        if isinstance(markup, dict) and "inline_keyboard" in markup
        else None
    )
    if (
        message.get("text") == content["text"]
        and message.get("entities") == content.get("entities")
        and message.get("reply_markup") == new_markup
    ):
        raise bad_request(
            "message is not modified: specified new message content and reply markup are exactly "
            "the same as a current content and reply markup of the message"
        )
    message.pop("entities", None)
    message.pop("reply_markup", None)
    message.update(content)
    if new_markup is not None:
        message["reply_markup"] = new_markup
    message["edit_date"] = svc.clock.now_int()
    return message


async def delete_message(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = svc.require_chat(params)
    message_id = params.integer("message_id", empty_error="message identifier is not specified")
    if svc.world.messages.pop((chat.id, message_id or 0), None) is None:
        raise bad_request("message to delete not found")
    return True


async def send_chat_action(svc: TelegramService, bot: BotState, params: Params) -> Any:
    action = params.text("action")
    if not action:
        raise bad_request("action is empty")
    chat = svc.require_chat(params)
    if chat.type == "private" and chat.id in bot.blocked_by:
        raise forbidden(BOT_BLOCKED)
    return True


async def answer_callback_query(svc: TelegramService, bot: BotState, params: Params) -> Any:
    query_id = params.text("callback_query_id", empty_error="query_id is empty")
    assert query_id is not None
    query = bot.callback_queries.get(query_id)
    if query is None or query.answered:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = params.text("text")
    if text is not None and len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    query.answered = True
    query.answer = {
        "text": text,
        "show_alert": params.boolean("show_alert"),
        "url": params.text("url"),
        "cache_time": params.integer("cache_time") or 0,
    }
    return True


def _store_upload(
    svc: TelegramService, kind: str, upload: Upload, default_extension: str
) -> StoredFile:
    extension = upload.filename.rsplit(".", 1)[-1] if "." in upload.filename else default_extension
    return svc.world.store_file(
        kind,
        upload.content,
        extension=extension.lower()[:8] or default_extension,
        mime_type=upload.content_type or None,
        file_name=upload.filename,
    )


def _caption(params: Params) -> dict[str, Any]:
    return _text_content(params, "caption", MAX_CAPTION_LENGTH, "message caption is too long")


async def send_document(svc: TelegramService, bot: BotState, params: Params) -> Any:
    params.chat_id()
    source = input_file(svc.world, params, "document", svc.config.max_upload_bytes)
    caption = _caption(params)
    markup = _reply_markup(params)
    chat = svc.require_chat(params)
    svc.check_can_send(bot, chat)
    stored = (
        _store_upload(svc, "documents", source, "bin") if isinstance(source, Upload) else source
    )
    document = file_api(stored, with_path=False)
    if stored.file_name:
        document["file_name"] = stored.file_name
    if stored.mime_type:
        document["mime_type"] = stored.mime_type
    return _record(svc, bot, chat, {"document": document, **caption}, markup)


async def send_photo(svc: TelegramService, bot: BotState, params: Params) -> Any:
    params.chat_id()
    source = input_file(svc.world, params, "photo", svc.config.max_upload_bytes)
    caption = _caption(params)
    markup = _reply_markup(params)
    chat = svc.require_chat(params)
    svc.check_can_send(bot, chat)
    if isinstance(source, Upload):
        if image_size(source.content) == (0, 0):
            raise bad_request("IMAGE_PROCESS_FAILED")
        stored = _store_upload(svc, "photos", source, "jpg")
    else:
        stored = source
    width, height = image_size(stored.content)
    photo = {**file_api(stored, with_path=False), "width": width, "height": height}
    return _record(svc, bot, chat, {"photo": [photo], **caption}, markup)


async def get_file(svc: TelegramService, bot: BotState, params: Params) -> Any:
    file_id = params.text("file_id", empty_error="file_id not specified")
    assert file_id is not None
    stored = svc.world.files.get(file_id)
    if stored is None:
        raise bad_request("invalid file_id")
    if stored.size > svc.config.max_download_bytes:
        raise bad_request("file is too big")
    return file_api(stored, with_path=True)


def _scope_key(params: Params) -> str:
    scope = params.json_value("scope", "can't parse BotCommandScope JSON object")
    language = params.text("language_code") or ""
    kind = scope.get("type", "default") if isinstance(scope, dict) else "default"
    return f"{kind}:{language}"


async def set_my_commands(svc: TelegramService, bot: BotState, params: Params) -> Any:
    commands = params.json_value("commands", "can't parse commands JSON object")
    if not isinstance(commands, list):
        raise bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad_request("too many commands specified")
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND.match(str(command.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise bad_request("command description is empty")
    bot.commands[_scope_key(params)] = [
        {"command": c["command"], "description": c["description"]} for c in commands
    ]
    return True


async def get_my_commands(svc: TelegramService, bot: BotState, params: Params) -> Any:
    return bot.commands.get(_scope_key(params), [])


async def delete_my_commands(svc: TelegramService, bot: BotState, params: Params) -> Any:
    bot.commands.pop(_scope_key(params), None)
    return True
