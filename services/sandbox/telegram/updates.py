"""What users do, turned into state changes and Update objects with Telegram's field names.

The control API calls these to simulate people: writing to the bot, pressing buttons, sending
voice notes, asking to join, posting in channels, following invite links, blocking the bot.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import DomosError
from services.sandbox.telegram.state import (
    BotState,
    CallbackQuery,
    Chat,
    InviteLink,
    JoinRequest,
    User,
    World,
)


class UserActionRefused(DomosError):
    """Telegram would not let the user do this (banned, link expired, ...)."""


def invite_link_api(world: World, link: InviteLink) -> dict[str, Any]:
    creator = world.users[link.creator_id]
    data: dict[str, Any] = {
        "invite_link": link.invite_link,
        "creator": creator.to_api(),
        "creates_join_request": link.creates_join_request,
        "is_primary": link.is_primary,
        "is_revoked": link.is_revoked,
    }
    if link.name is not None:
        data["name"] = link.name
    if link.expire_date is not None:
        data["expire_date"] = link.expire_date
    if link.member_limit is not None:
        data["member_limit"] = link.member_limit
    if link.creates_join_request:
        data["pending_join_request_count"] = sum(
            1 for request in world.join_requests.values() if request.invite_link == link.invite_link
        )
    return data


def command_entities(text: str) -> list[dict[str, Any]]:
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]


def _message(
    world: World, chat: Chat, sender: User | None, extra: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": world.new_message_id(chat.id),
        "date": world.clock.now_int(),
        "chat": chat.to_api(),
    }
    if sender is not None:
        message["from"] = sender.to_api()
    message.update(extra)
    world.messages[(chat.id, message["message_id"])] = message
    return message


def _broadcast(world: World, kind: str, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Queue the update for every bot; users talk to the world, every bot sees it."""
    return [world.enqueue_update(bot, kind, payload) for bot in world.bots.values()]


def _chat_for(world: World, user: User, chat_id: int | None) -> Chat:
    if chat_id is None or chat_id == user.id:
        return world.ensure_private_chat(user)
    chat = world.chats.get(chat_id)
    if chat is None:
        raise UserActionRefused(f"chat {chat_id} does not exist; create it first")
    return chat


def send_text(world: World, user: User, text: str, chat_id: int | None = None) -> dict[str, Any]:
    chat = _chat_for(world, user, chat_id)
    extra: dict[str, Any] = {"text": text}
    entities = command_entities(text)
    if entities:
        extra["entities"] = entities
    message = _message(world, chat, user, extra)
    _broadcast(world, "message", message)
    return message


def send_voice(
    world: World,
    user: User,
    content: bytes,
    duration: int,
    chat_id: int | None = None,
    caption: str | None = None,
) -> dict[str, Any]:
    chat = _chat_for(world, user, chat_id)
    stored = world.store_file("voice", content, extension="oga", mime_type="audio/ogg")
    voice = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "duration": duration,
        "mime_type": "audio/ogg",
        "file_size": stored.size,
    }
    extra: dict[str, Any] = {"voice": voice}
    if caption:
        extra["caption"] = caption
    message = _message(world, chat, user, extra)
    _broadcast(world, "message", message)
    return message


def press_button(
    world: World, bot: BotState, user: User, chat_id: int, message_id: int, data: str
) -> dict[str, Any]:
    message = world.messages.get((chat_id, message_id))
    if message is None:
        raise UserActionRefused(f"message {message_id} not found in chat {chat_id}")
    query_id = str(4_000_000_000_000_000_000 + world.next_counter())
    query = {
        "id": query_id,
        "from": user.to_api(),
        "message": message,
        "chat_instance": str(-(abs(chat_id) * 1000 + bot.id % 1000)),
        "data": data,
    }
    bot.callback_queries[query_id] = CallbackQuery(id=query_id, user_id=user.id)
    world.enqueue_update(bot, "callback_query", query)
    return query


def post_in_channel(world: World, chat: Chat, text: str) -> dict[str, Any]:
    if chat.type != "channel":
        raise UserActionRefused(f"chat {chat.id} is a {chat.type}, not a channel")
    message = _message(world, chat, None, {"sender_chat": chat.to_api(), "text": text})
    _broadcast(world, "channel_post", message)
    return message


def _refuse_if_banned_or_in(world: World, chat: Chat, user: User) -> None:
    """Telegram's refusals for anyone entering a chat, whatever the way in."""
    status = world.member(chat.id, user.id).status
    if status == "kicked":
        raise UserActionRefused("user is banned in this chat")
    if status in ("creator", "administrator", "member", "restricted"):
        raise UserActionRefused("user is already a member")


def request_to_join(
    world: World, user: User, chat: Chat, link: InviteLink | None = None
) -> dict[str, Any]:
    if chat.type == "private":
        raise UserActionRefused("private chats have no join requests")
    _refuse_if_banned_or_in(world, chat, user)
    world.ensure_private_chat(user)
    request = JoinRequest(
        chat_id=chat.id,
        user_id=user.id,
        date=world.clock.now_int(),
        invite_link=link.invite_link if link else None,
    )
    world.join_requests[(chat.id, user.id)] = request
    payload: dict[str, Any] = {
        "chat": chat.to_api(),
        "from": user.to_api(),
        "user_chat_id": user.id,
        "date": request.date,
    }
    if link is not None:
        payload["invite_link"] = invite_link_api(world, link)
    world.log_action("join_requested", chat_id=chat.id, user_id=user.id)
    _broadcast(world, "chat_join_request", payload)
    return payload


def join_by_link(world: World, user: User, url: str) -> dict[str, Any]:
    """Follow an invite link with Telegram's rules; returns {"joined": …} or the join request."""
    link = world.invite_links.get(url)
    if link is None or link.is_revoked:
        raise UserActionRefused("invite link is invalid or revoked")
    if link.expire_date is not None and link.expire_date <= world.clock.now():
        raise UserActionRefused("invite link has expired")
    chat = world.chats[link.chat_id]
    _refuse_if_banned_or_in(world, chat, user)
    if link.creates_join_request:
        return {"join_request": request_to_join(world, user, chat, link)}
    if link.member_limit is not None and link.joined_count >= link.member_limit:
        raise UserActionRefused("invite link member limit reached")
    link.joined_count += 1
    add_member(world, chat, user, via=link)
    return {"joined": True, "chat_id": chat.id}


def add_by(world: World, chat: Chat, user: User, adder: User) -> dict[str, Any]:
    """`adder`, in the chat, adds `user` (Telegram lets members add members unless the chat's
    permissions forbid it); the chat_member update is `adder`'s doing."""
    if chat.type == "channel":
        raise UserActionRefused("channel subscribers cannot add people")
    if world.member(chat.id, adder.id).status not in ("creator", "administrator", "member"):
        raise UserActionRefused("only someone in the chat can add people to it")
    _refuse_if_banned_or_in(world, chat, user)
    add_member(world, chat, user, actor=adder)
    return {"joined": True, "chat_id": chat.id}


def leave(world: World, chat: Chat, user: User) -> dict[str, Any]:
    """The user leaves the chat themselves: state, the chat_member update (the user's own
    doing) and, in groups, the `left_chat_member` service message, as Telegram sends them."""
    if world.member(chat.id, user.id).status not in ("administrator", "member", "restricted"):
        raise UserActionRefused("user is not a member of the chat")
    old = world.chat_member_api(chat.id, user.id)
    world.set_member(chat.id, user.id, "left")
    world.log_action("member_left", chat_id=chat.id, user_id=user.id)
    _broadcast(
        world,
        "chat_member",
        {
            "chat": chat.to_api(),
            "from": user.to_api(),
            "date": world.clock.now_int(),
            "old_chat_member": old,
            "new_chat_member": world.chat_member_api(chat.id, user.id),
        },
    )
    if chat.is_group:
        service = _message(world, chat, user, {"left_chat_member": user.to_api()})
        _broadcast(world, "message", service)
    return {"left": True, "chat_id": chat.id}


def add_member(
    world: World,
    chat: Chat,
    user: User,
    via: InviteLink | None = None,
    actor: User | None = None,
) -> None:
    """The user is now in the chat: state, a chat_member update (by `actor`, else the user)
    and the service message."""
    old = world.chat_member_api(chat.id, user.id)
    world.set_member(chat.id, user.id, "member")
    world.join_requests.pop((chat.id, user.id), None)
    world.log_action(
        "member_joined",
        chat_id=chat.id,
        user_id=user.id,
        invite_link=via.invite_link if via else None,
    )
    update: dict[str, Any] = {
        "chat": chat.to_api(),
        "from": (actor or user).to_api(),
        "date": world.clock.now_int(),
        "old_chat_member": old,
        "new_chat_member": world.chat_member_api(chat.id, user.id),
    }
    if via is not None:
        update["invite_link"] = invite_link_api(world, via)
    _broadcast(world, "chat_member", update)
    if chat.is_group:
        service = _message(world, chat, actor or user, {"new_chat_members": [user.to_api()]})
        _broadcast(world, "message", service)


def set_blocked(world: World, bot: BotState, user: User, blocked: bool) -> dict[str, Any]:
    """Block or unblock the bot; Telegram tells the bot with a my_chat_member update."""
    chat = world.ensure_private_chat(user)
    was_blocked = user.id in bot.blocked_by
    if blocked:
        bot.blocked_by.add(user.id)
    else:
        bot.blocked_by.discard(user.id)
    bot_user = bot.user.to_api()
    statuses: dict[bool, dict[str, object]] = {
        True: {"status": "kicked", "until_date": 0},
        False: {"status": "member"},
    }
    update = {
        "chat": chat.to_api(),
        "from": user.to_api(),
        "date": world.clock.now_int(),
        "old_chat_member": {**statuses[was_blocked], "user": bot_user},
        "new_chat_member": {**statuses[blocked], "user": bot_user},
    }
    if was_blocked != blocked:
        world.enqueue_update(bot, "my_chat_member", update)
    return update


def migrate_group(world: World, chat: Chat, new_chat_id: int, actor: User) -> dict[str, Any]:
    """`actor` upgrades a basic group to a supergroup, as Telegram does: a new chat with a new
    id and the same people, the old one closed (its methods answer 400 with
    migrate_to_chat_id), and two service messages: migrate_to_chat_id in the old chat,
    migrate_from_chat_id in the new one."""
    if chat.type != "group" or chat.migrated_to is not None:
        raise UserActionRefused(f"chat {chat.id} is not a basic group")
    if new_chat_id in world.chats:
        raise UserActionRefused(f"chat {new_chat_id} exists already")
    new = world.add_chat(Chat(id=new_chat_id, type="supergroup", title=chat.title))
    for user_id, member in world.members.get(chat.id, {}).items():
        if member.status in ("creator", "administrator", "member", "restricted"):
            world.set_member(new.id, user_id, member.status, member.until_date, member.rights)
    gone = _message(world, chat, actor, {"migrate_to_chat_id": new.id})
    chat.migrated_to = new.id
    came = _message(world, new, actor, {"migrate_from_chat_id": chat.id})
    _broadcast(world, "message", gone)
    _broadcast(world, "message", came)
    world.log_action("chat_migrated", chat_id=chat.id, to_chat_id=new.id)
    return new.to_api()
