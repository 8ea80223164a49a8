"""Bot methods on chats and members: bans, member lookups, join requests, invite links."""

from __future__ import annotations

from typing import Any

from services.sandbox.telegram.errors import bad_request, forbidden
from services.sandbox.telegram.params import Params
from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import BotState, Chat, InviteLink, User
from services.sandbox.telegram.updates import add_member, invite_link_api

#: banChatMember: until_date closer than 30 s or further than 366 days means "forever".
BAN_MIN_S = 30
BAN_MAX_S = 366 * 24 * 3600
PRIVATE_CHAT_MEMBERS = "chat member status can't be changed in private chats"
#: Telegram's refusals when the bot lacks the right (docs/sandbox.md lists the sources).
CANT_RESTRICT = "not enough rights to restrict/ban chat member"
CANT_DECIDE_REQUESTS = "CHAT_ADMIN_REQUIRED"
CANT_MANAGE_LINKS = "not enough rights to manage chat invite link"
CANT_EXPORT_LINK = "not enough rights to export chat invite link"


def _group_chat(svc: TelegramService, params: Params) -> Chat:
    chat = svc.require_chat(params)
    if chat.type == "private":
        raise bad_request(PRIVATE_CHAT_MEMBERS)
    return chat


def _admin_chat(
    svc: TelegramService, bot: BotState, params: Params, right: str, refusal: str
) -> Chat:
    """A group or channel where the bot is an administrator holding `right`: 403 when the bot
    is not in the chat at all, 400 `refusal` when it is but may not do this."""
    chat = _group_chat(svc, params)
    member = svc.world.member(chat.id, bot.id)
    if member.status == "kicked":
        raise forbidden(f"bot was kicked from the {chat.type} chat")
    if member.status == "left":
        raise forbidden(f"bot is not a member of the {chat.type} chat")
    if not member.can(right):
        raise bad_request(refusal)
    return chat


def _user(svc: TelegramService, params: Params) -> User:
    user = svc.world.users.get(params.user_id())
    if user is None:
        raise bad_request("user not found")
    return user


def _member_update(svc: TelegramService, bot: BotState, chat: Chat, user: User, old: Any) -> None:
    new = svc.world.chat_member_api(chat.id, user.id)
    if new != old:
        svc.world.enqueue_update(
            bot,
            "chat_member",
            {
                "chat": chat.to_api(),
                "from": bot.user.to_api(),
                "date": svc.clock.now_int(),
                "old_chat_member": old,
                "new_chat_member": new,
            },
        )


async def get_chat(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = svc.require_chat(params)
    return {**chat.to_api(), "accent_color_id": 0, "max_reaction_count": 11}


async def get_chat_member(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = svc.require_chat(params)
    user = _user(svc, params)
    return svc.world.chat_member_api(chat.id, user.id)


def _refuse_owner_and_admins(svc: TelegramService, chat: Chat, user: User, bot: BotState) -> None:
    status = svc.world.member(chat.id, user.id).status
    if user.id == bot.id:
        raise bad_request("can't remove self")
    if status == "creator":
        raise bad_request("can't remove chat owner")
    if status == "administrator":
        raise bad_request("user is an administrator of the chat")


async def ban_chat_member(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_restrict_members", CANT_RESTRICT)
    user = _user(svc, params)
    _refuse_owner_and_admins(svc, chat, user, bot)
    now = svc.clock.now_int()
    until = params.integer("until_date") or 0
    if until and not (now + BAN_MIN_S <= until <= now + BAN_MAX_S):
        until = 0
    world = svc.world
    old = world.chat_member_api(chat.id, user.id)
    # In basic groups a ban only removes the user; supergroups and channels keep them out.
    if chat.type == "group":
        world.set_member(chat.id, user.id, "left")
    else:
        world.set_member(chat.id, user.id, "kicked", until)
    world.join_requests.pop((chat.id, user.id), None)
    world.log_action("banned", bot_id=bot.id, chat_id=chat.id, user_id=user.id, until_date=until)
    _member_update(svc, bot, chat, user, old)
    return True


async def unban_chat_member(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_restrict_members", CANT_RESTRICT)
    user = _user(svc, params)
    only_if_banned = params.boolean("only_if_banned")
    world = svc.world
    status = world.member(chat.id, user.id).status
    if status == "creator":
        raise bad_request("can't remove chat owner")
    if status == "administrator":
        raise bad_request("user is an administrator of the chat")
    if status != "kicked" and only_if_banned:
        return True
    old = world.chat_member_api(chat.id, user.id)
    # Without only_if_banned Telegram guarantees the user is not a member afterwards.
    world.set_member(chat.id, user.id, "left")
    world.log_action(
        "unbanned",
        bot_id=bot.id,
        chat_id=chat.id,
        user_id=user.id,
        was=status,
        only_if_banned=only_if_banned,
    )
    _member_update(svc, bot, chat, user, old)
    return True


async def approve_chat_join_request(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_invite_users", CANT_DECIDE_REQUESTS)
    user = _user(svc, params)
    world = svc.world
    if world.member(chat.id, user.id).status in ("creator", "administrator", "member"):
        raise bad_request("USER_ALREADY_PARTICIPANT")
    request = world.join_requests.get((chat.id, user.id))
    if request is None:
        raise bad_request("HIDE_REQUESTER_MISSING")
    link = world.invite_links.get(request.invite_link or "")
    if link is not None:
        link.joined_count += 1
    world.log_action("join_request_approved", bot_id=bot.id, chat_id=chat.id, user_id=user.id)
    add_member(world, chat, user, via=link)
    return True


async def decline_chat_join_request(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_invite_users", CANT_DECIDE_REQUESTS)
    user = _user(svc, params)
    if svc.world.join_requests.pop((chat.id, user.id), None) is None:
        raise bad_request("HIDE_REQUESTER_MISSING")
    svc.world.log_action("join_request_declined", bot_id=bot.id, chat_id=chat.id, user_id=user.id)
    return True


def _new_link(svc: TelegramService, bot: BotState, chat: Chat, primary: bool) -> InviteLink:
    number = svc.world.next_counter()
    url = f"https://t.me/+sandbox{abs(chat.id) % 100000:05d}{number:08d}"
    link = InviteLink(invite_link=url, chat_id=chat.id, creator_id=bot.id, is_primary=primary)
    svc.world.invite_links[url] = link
    return link


def _link_options(svc: TelegramService, params: Params, link: InviteLink) -> None:
    name = params.text("name")
    if name is not None and len(name) > 32:
        raise bad_request("invite link name must not exceed 32 characters")
    expire_date = params.integer("expire_date")
    member_limit = params.integer("member_limit")
    creates_join_request = params.boolean("creates_join_request")
    if member_limit is not None and not 1 <= member_limit <= 99999:
        raise bad_request("member limit must be between 1 and 99999")
    if creates_join_request and member_limit is not None:
        raise bad_request(
            "member limit can't be specified for links requiring administrator approval"
        )
    if expire_date is not None and expire_date <= svc.clock.now_int():
        raise bad_request("EXPIRE_DATE_INVALID")
    link.name = name
    link.expire_date = expire_date
    link.member_limit = member_limit
    link.creates_join_request = creates_join_request


async def create_chat_invite_link(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_invite_users", CANT_MANAGE_LINKS)
    probe = InviteLink(invite_link="", chat_id=chat.id, creator_id=bot.id)
    _link_options(svc, params, probe)
    link = _new_link(svc, bot, chat, primary=False)
    _link_options(svc, params, link)
    svc.world.log_action(
        "invite_link_created", bot_id=bot.id, chat_id=chat.id, link=link.invite_link
    )
    return invite_link_api(svc.world, link)


def _existing_link(svc: TelegramService, chat: Chat, params: Params) -> InviteLink:
    url = params.text("invite_link", empty_error="invite link is empty")
    link = svc.world.invite_links.get(url or "")
    if link is None or link.chat_id != chat.id:
        raise bad_request("INVITE_HASH_EXPIRED")
    return link


async def edit_chat_invite_link(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_invite_users", CANT_MANAGE_LINKS)
    link = _existing_link(svc, chat, params)
    _link_options(svc, params, link)
    return invite_link_api(svc.world, link)


async def revoke_chat_invite_link(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_invite_users", CANT_MANAGE_LINKS)
    link = _existing_link(svc, chat, params)
    link.is_revoked = True
    svc.world.log_action(
        "invite_link_revoked", bot_id=bot.id, chat_id=chat.id, link=link.invite_link
    )
    if link.is_primary:
        _new_link(svc, bot, chat, primary=True)
    return invite_link_api(svc.world, link)


async def export_chat_invite_link(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _admin_chat(svc, bot, params, "can_invite_users", CANT_EXPORT_LINK)
    for link in svc.world.invite_links.values():
        if link.chat_id == chat.id and link.is_primary:
            link.is_revoked = True
    return _new_link(svc, bot, chat, primary=True).invite_link


async def leave_chat(svc: TelegramService, bot: BotState, params: Params) -> Any:
    chat = _group_chat(svc, params)
    svc.world.set_member(chat.id, bot.id, "left")
    return True
