"""Control routes of the Telegram fake: people, chats and what users do, as tests play them."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from services.sandbox.config import FloodLimits
from services.sandbox.control.base import (
    ControlError,
    Keys,
    Route,
    int_field,
    opt_int_field,
    str_field,
)
from services.sandbox.telegram import updates as users
from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import ADMIN_RIGHTS, MEMBER_STATUSES, BotState, Chat, User

CHAT_TYPES = ("private", "group", "supergroup", "channel")
MAX_SYNTHETIC_FILE = 64 * 1024 * 1024


def telegram_routes(keys: Keys) -> list[Route]:
    def tg(request: web.Request) -> TelegramService:
        return request.app[keys.telegram]

    def bot_for(request: web.Request, data: dict[str, Any]) -> BotState:
        svc = tg(request)
        bot_id = data.get("bot_id", request.query.get("bot_id"))
        if bot_id is None:
            return svc.default_bot()
        for bot in svc.world.bots.values():
            if str(bot.id) == str(bot_id):
                return bot
        raise ControlError(f"no bot with id {bot_id}", 404)

    def user_for(request: web.Request, data: dict[str, Any]) -> User:
        return tg(request).world.ensure_user(
            int_field(data, "user_id"),
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            username=data.get("username"),
            language_code=data.get("language_code"),
        )

    def chat_for(request: web.Request, chat_id: int) -> Chat:
        chat = tg(request).world.chats.get(chat_id)
        if chat is None:
            raise ControlError(f"chat {chat_id} not found", 404)
        return chat

    # telegram: people and chats -------------------------------------------------------------

    async def bots(request: web.Request, data: dict[str, Any]) -> Any:
        return [
            {
                "id": bot.id,
                "username": bot.user.username,
                "webhook_url": bot.webhook.url if bot.webhook else None,
                "pending_update_count": len(bot.updates),
                "allowed_updates": sorted(bot.allowed_updates),
                "blocked_by": sorted(bot.blocked_by),
                "commands": bot.commands,
            }
            for bot in tg(request).world.bots.values()
        ]

    async def create_user(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        tg(request).world.ensure_private_chat(user)
        return user.to_api()

    async def block(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, {**data, "user_id": request.match_info["user_id"]})
        return users.set_blocked(tg(request).world, bot_for(request, data), user, True)

    async def unblock(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, {**data, "user_id": request.match_info["user_id"]})
        return users.set_blocked(tg(request).world, bot_for(request, data), user, False)

    async def deactivate(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, {**data, "user_id": request.match_info["user_id"]})
        tg(request).deactivated.add(user.id)
        return {"ok": True}

    async def create_chat(request: web.Request, data: dict[str, Any]) -> Any:
        chat_type = str_field(data, "type", "supergroup")
        if chat_type not in CHAT_TYPES:
            raise ControlError(f"type must be one of {', '.join(CHAT_TYPES)}")
        chat_id = int_field(data, "id")
        if (chat_type == "private") != (chat_id > 0):
            raise ControlError("private chats have positive ids, groups and channels negative")
        chat = Chat(
            id=chat_id, type=chat_type, title=data.get("title"), username=data.get("username")
        )
        if chat_type != "private" and not chat.title:
            chat.title = f"Chat {chat_id}"
        tg(request).world.add_chat(chat)
        return chat.to_api()

    async def members(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat = chat_for(request, int(request.match_info["chat_id"]))
        return [
            {
                "user_id": user_id,
                "status": world.member(chat.id, user_id).status,
                "until_date": world.member(chat.id, user_id).until_date,
            }
            for user_id in list(world.members.get(chat.id, {}))
        ]

    async def set_member(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat = chat_for(request, int(request.match_info["chat_id"]))
        user = user_for(request, data)
        status = str_field(data, "status", "member")
        if status not in MEMBER_STATUSES:
            raise ControlError(f"status must be one of {', '.join(MEMBER_STATUSES)}")
        rights = data.get("rights") or {}
        if not isinstance(rights, dict) or not all(
            key in ADMIN_RIGHTS and isinstance(value, bool) for key, value in rights.items()
        ):
            raise ControlError(f"rights: an object of booleans among {', '.join(ADMIN_RIGHTS)}")
        world.set_member(chat.id, user.id, status, int_field(data, "until_date", 0), rights)
        return world.chat_member_api(chat.id, user.id)

    async def bans(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat_filter = opt_int_field(request.query, "chat_id")
        result = []
        for chat_id, chat_members in world.members.items():
            if chat_filter is not None and chat_id != chat_filter:
                continue
            for user_id in list(chat_members):
                member = world.member(chat_id, user_id)
                if member.status == "kicked":
                    result.append(
                        {"chat_id": chat_id, "user_id": user_id, "until_date": member.until_date}
                    )
        return result

    async def actions(request: web.Request, data: dict[str, Any]) -> Any:
        chat_filter = opt_int_field(request.query, "chat_id")
        user_filter = opt_int_field(request.query, "user_id")
        return [
            action
            for action in tg(request).world.actions
            if (chat_filter is None or action.get("chat_id") == chat_filter)
            and (user_filter is None or action.get("user_id") == user_filter)
        ]

    async def invite_links(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat_filter = opt_int_field(request.query, "chat_id")
        return [
            {
                **users.invite_link_api(world, link),
                "chat_id": link.chat_id,
                "joined_count": link.joined_count,
            }
            for link in world.invite_links.values()
            if chat_filter is None or link.chat_id == chat_filter
        ]

    async def join_requests(request: web.Request, data: dict[str, Any]) -> Any:
        chat_filter = opt_int_field(request.query, "chat_id")
        return [
            {
                "chat_id": r.chat_id,
                "user_id": r.user_id,
                "date": r.date,
                "invite_link": r.invite_link,
            }
            for r in tg(request).world.join_requests.values()
            if chat_filter is None or r.chat_id == chat_filter
        ]

    # telegram: what users do ----------------------------------------------------------------

    async def message(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        return users.send_text(
            tg(request).world, user, str_field(data, "text"), opt_int_field(data, "chat_id")
        )

    async def callback_query(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        chat_id = opt_int_field(data, "chat_id") or user.id
        return users.press_button(
            tg(request).world,
            bot_for(request, data),
            user,
            chat_id,
            int_field(data, "message_id"),
            str_field(data, "data"),
        )

    async def voice(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        if data.get("content_b64") is not None:
            try:
                content = base64.b64decode(str(data["content_b64"]), validate=True)
            except binascii.Error:
                raise ControlError("content_b64 is not valid base64") from None
        else:
            size = int_field(data, "size", 1024)
            if not 0 < size <= MAX_SYNTHETIC_FILE:
                raise ControlError(f"size must be between 1 and {MAX_SYNTHETIC_FILE}")
            content = (b"OggS" + bytes(range(256)) * (size // 256 + 1))[:size]
        return users.send_voice(
            tg(request).world,
            user,
            content,
            int_field(data, "duration", 3),
            opt_int_field(data, "chat_id"),
            data.get("caption"),
        )

    async def join_request(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        user = user_for(request, data)
        chat = chat_for(request, int_field(data, "chat_id"))
        link = world.invite_links.get(str(data.get("invite_link", "")))
        return users.request_to_join(world, user, chat, link)

    async def channel_post(request: web.Request, data: dict[str, Any]) -> Any:
        chat = chat_for(request, int_field(data, "chat_id"))
        return users.post_in_channel(tg(request).world, chat, str_field(data, "text"))

    async def join_by_link(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        return users.join_by_link(tg(request).world, user, str_field(data, "invite_link"))

    async def add_to_chat(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat = chat_for(request, int(request.match_info["chat_id"]))
        adder = world.users.get(int_field(data, "added_by"))
        if adder is None:
            raise ControlError("added_by: no such user")
        return users.add_by(world, chat, user_for(request, data), adder)

    async def leave_chat(request: web.Request, data: dict[str, Any]) -> Any:
        chat = chat_for(request, int(request.match_info["chat_id"]))
        return users.leave(tg(request).world, chat, user_for(request, data))

    async def migrate(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat = chat_for(request, int(request.match_info["chat_id"]))
        actor = world.users.get(int_field(data, "by"))
        if actor is None:
            raise ControlError("by: no such user")
        # Telegram's supergroup ids are -100 followed by the chat's own number.
        new_id = opt_int_field(data, "to_chat_id") or int(f"-100{abs(chat.id)}")
        return users.migrate_group(world, chat, new_id, actor)

    async def sent(request: web.Request, data: dict[str, Any]) -> Any:
        chat_filter = opt_int_field(request.query, "chat_id")
        bot_filter = opt_int_field(request.query, "bot_id")
        return [
            message
            for bot_id, message in tg(request).world.sent
            if (chat_filter is None or message["chat"]["id"] == chat_filter)
            and (bot_filter is None or bot_id == bot_filter)
        ]

    async def callback_answers(request: web.Request, data: dict[str, Any]) -> Any:
        bot = bot_for(request, data)
        return [
            {"callback_query_id": q.id, "user_id": q.user_id, **(q.answer or {})}
            for q in bot.callback_queries.values()
            if q.answered
        ]

    async def get_limits(request: web.Request, data: dict[str, Any]) -> Any:
        return tg(request).flood.limits.to_dict()

    async def set_limits(request: web.Request, data: dict[str, Any]) -> Any:
        current = tg(request).flood.limits.to_dict()
        unknown = set(data) - set(current)
        if unknown:
            raise ControlError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        merged = {**current, **data}
        try:
            limits = FloodLimits(
                enabled=bool(merged["enabled"]),
                per_bot_per_s=float(merged["per_bot_per_s"]),
                per_bot_burst=int(merged["per_bot_burst"]),
                per_chat_per_s=float(merged["per_chat_per_s"]),
                per_chat_burst=int(merged["per_chat_burst"]),
                per_group_per_min=float(merged["per_group_per_min"]),
                per_group_burst=int(merged["per_group_burst"]),
            )
        except (TypeError, ValueError):
            raise ControlError("limits must be numbers") from None
        tg(request).flood.configure(limits)
        return limits.to_dict()

    return [
        ("GET", "/_sandbox/telegram/bots", bots),
        ("POST", "/_sandbox/telegram/users", create_user),
        ("POST", "/_sandbox/telegram/users/{user_id}/block", block),
        ("POST", "/_sandbox/telegram/users/{user_id}/unblock", unblock),
        ("POST", "/_sandbox/telegram/users/{user_id}/deactivate", deactivate),
        ("POST", "/_sandbox/telegram/chats", create_chat),
        ("GET", "/_sandbox/telegram/chats/{chat_id}/members", members),
        ("POST", "/_sandbox/telegram/chats/{chat_id}/members", set_member),
        ("GET", "/_sandbox/telegram/bans", bans),
        ("GET", "/_sandbox/telegram/actions", actions),
        ("GET", "/_sandbox/telegram/invite_links", invite_links),
        ("POST", "/_sandbox/telegram/invite_links/join", join_by_link),
        ("POST", "/_sandbox/telegram/chats/{chat_id}/add", add_to_chat),
        ("POST", "/_sandbox/telegram/chats/{chat_id}/leave", leave_chat),
        ("POST", "/_sandbox/telegram/chats/{chat_id}/migrate", migrate),
        ("GET", "/_sandbox/telegram/join_requests", join_requests),
        ("POST", "/_sandbox/telegram/join_requests", join_request),
        ("POST", "/_sandbox/telegram/messages", message),
        ("POST", "/_sandbox/telegram/callback_queries", callback_query),
        ("POST", "/_sandbox/telegram/voice", voice),
        ("POST", "/_sandbox/telegram/channel_posts", channel_post),
        ("GET", "/_sandbox/telegram/sent", sent),
        ("GET", "/_sandbox/telegram/callback_answers", callback_answers),
        ("GET", "/_sandbox/telegram/limits", get_limits),
        ("PUT", "/_sandbox/telegram/limits", set_limits),
    ]
