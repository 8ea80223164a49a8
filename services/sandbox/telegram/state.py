"""Telegram world state: users, chats, members, messages, files, invite links, per-bot queues.

Objects render themselves with Telegram's field names (`to_api()`), so handlers and the control
API return exactly what the Bot API would.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from services.sandbox.clock import Clock

GROUP_TYPES = ("group", "supergroup")
#: What Telegram sends when allowed_updates was never set (chat_member etc. need opting in).
DEFAULT_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "callback_query",
        "my_chat_member",
        "chat_join_request",
    }
)
ALL_UPDATE_TYPES = DEFAULT_UPDATE_TYPES | {"chat_member", "message_reaction"}
MEMBER_STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")
#: Telegram keeps undelivered updates for 24 hours.
UPDATE_RETENTION_S = 24 * 3600


@dataclass
class User:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None
    is_bot: bool = False

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass
class Chat:
    id: int
    type: str
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    #: A basic group upgraded to a supergroup: the new chat's id (the old one answers 400).
    migrated_to: int | None = None

    @property
    def is_group(self) -> bool:
        return self.type in GROUP_TYPES

    def to_api(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("title", "username", "first_name", "last_name"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        return data


@dataclass
class Member:
    user_id: int
    status: str
    #: Unix time the ban/restriction ends; 0 means forever.
    until_date: int = 0
    #: An administrator's rights that differ from ADMIN_RIGHTS' default (all granted).
    rights: dict[str, bool] = field(default_factory=dict)

    def can(self, right: str) -> bool:
        """Whether this member may do what `right` allows: creators always, administrators
        unless the right was taken away, nobody else."""
        if self.status == "creator":
            return True
        return self.status == "administrator" and self.rights.get(right, True)


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    content: bytes
    mime_type: str | None = None
    file_name: str | None = None

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass
class InviteLink:
    invite_link: str
    chat_id: int
    creator_id: int
    name: str | None = None
    expire_date: int | None = None
    member_limit: int | None = None
    creates_join_request: bool = False
    is_revoked: bool = False
    is_primary: bool = False
    joined_count: int = 0


@dataclass
class JoinRequest:
    chat_id: int
    user_id: int
    date: int
    invite_link: str | None = None


@dataclass
class CallbackQuery:
    id: str
    user_id: int
    answered: bool = False
    answer: dict[str, Any] | None = None


@dataclass
class Webhook:
    url: str
    secret_token: str | None = None
    max_connections: int = 40
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class BotState:
    """One bot (one token): its identity, update queue, webhook and the users who blocked it."""

    token: str
    user: User
    updates: deque[dict[str, Any]] = field(default_factory=deque)
    update_dates: deque[float] = field(default_factory=deque)
    next_update_id: int = 1
    allowed_updates: frozenset[str] = DEFAULT_UPDATE_TYPES
    webhook: Webhook | None = None
    blocked_by: set[int] = field(default_factory=set)
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    callback_queries: dict[str, CallbackQuery] = field(default_factory=dict)
    #: Set whenever an update is queued; long pollers and the webhook worker wait on it.
    new_update: asyncio.Event = field(default_factory=asyncio.Event)
    #: Bumped by each getUpdates so an older concurrent poll ends with 409.
    poll_generation: int = 0
    webhook_task: asyncio.Task[None] | None = None

    @property
    def id(self) -> int:
        return self.user.id


def bot_from_token(token: str) -> BotState:
    bot_id = int(token.partition(":")[0])
    user = User(
        id=bot_id,
        first_name="Sandbox Bot",
        username=f"sandbox_{bot_id}_bot",
        is_bot=True,
    )
    return BotState(token=token, user=user)


class World:
    """Everything users and chats do, shared by all bots of the sandbox."""

    def __init__(self, clock: Clock, tokens: tuple[str, ...]) -> None:
        self.clock = clock
        self.bots: dict[str, BotState] = {token: bot_from_token(token) for token in tokens}
        self.users: dict[int, User] = {bot.id: bot.user for bot in self.bots.values()}
        self.chats: dict[int, Chat] = {}
        self.chat_usernames: dict[str, int] = {}
        self.members: dict[int, dict[int, Member]] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.next_message_id: dict[int, int] = {}
        #: Every message a bot sent, in order: (bot_id, message).
        self.sent: list[tuple[int, dict[str, Any]]] = []
        self.files: dict[str, StoredFile] = {}
        self.files_by_path: dict[str, StoredFile] = {}
        self.invite_links: dict[str, InviteLink] = {}
        self.join_requests: dict[tuple[int, int], JoinRequest] = {}
        #: Moderation actions by bots and joins by users, for the control API.
        self.actions: list[dict[str, Any]] = []
        #: The last id handed out (kept by the state file, so ids never repeat).
        self.counter = 0

    # identifiers -----------------------------------------------------------------------------

    def next_counter(self) -> int:
        self.counter += 1
        return self.counter

    def new_message_id(self, chat_id: int) -> int:
        message_id = self.next_message_id.get(chat_id, 0) + 1
        self.next_message_id[chat_id] = message_id
        return message_id

    # users and chats ---------------------------------------------------------------------------

    def ensure_user(self, user_id: int, **fields: Any) -> User:
        user = self.users.get(user_id)
        if user is None:
            user = User(id=user_id, first_name=fields.pop("first_name", None) or f"User{user_id}")
            self.users[user_id] = user
        for key, value in fields.items():
            if value is not None and hasattr(user, key):
                setattr(user, key, value)
        return user

    def ensure_private_chat(self, user: User) -> Chat:
        chat = self.chats.get(user.id)
        if chat is None:
            chat = Chat(
                id=user.id,
                type="private",
                first_name=user.first_name,
                last_name=user.last_name,
                username=user.username,
            )
            self.add_chat(chat)
        return chat

    def add_chat(self, chat: Chat) -> Chat:
        self.chats[chat.id] = chat
        if chat.username:
            self.chat_usernames[chat.username.lower()] = chat.id
        if chat.type != "private":
            members = self.members.setdefault(chat.id, {})
            for bot in self.bots.values():
                members.setdefault(bot.id, Member(bot.id, "administrator"))
        return chat

    def find_chat(self, chat_ref: int | str) -> Chat | None:
        if isinstance(chat_ref, str):
            chat_id = self.chat_usernames.get(chat_ref.lstrip("@").lower())
            return None if chat_id is None else self.chats.get(chat_id)
        return self.chats.get(chat_ref)

    def member(self, chat_id: int, user_id: int) -> Member:
        """Current membership, lifting bans and restrictions whose until_date has passed."""
        member = self.members.get(chat_id, {}).get(user_id)
        if member is None:
            return Member(user_id, "left")
        if (
            member.status in ("kicked", "restricted")
            and member.until_date
            and member.until_date <= self.clock.now()
        ):
            member.status = "left" if member.status == "kicked" else "member"
            member.until_date = 0
        return member

    def set_member(
        self,
        chat_id: int,
        user_id: int,
        status: str,
        until_date: int = 0,
        rights: dict[str, bool] | None = None,
    ) -> Member:
        member = Member(user_id, status, until_date, dict(rights or {}))
        self.members.setdefault(chat_id, {})[user_id] = member
        return member

    def chat_member_api(self, chat_id: int, user_id: int) -> dict[str, Any]:
        """A ChatMember object with the fields its status requires."""
        member = self.member(chat_id, user_id)
        user = self.users.get(user_id) or User(id=user_id, first_name=f"User{user_id}")
        data: dict[str, Any] = {"status": member.status, "user": user.to_api()}
        if member.status == "creator":
            data["is_anonymous"] = False
        elif member.status == "administrator":
            data.update(dict.fromkeys(ADMIN_RIGHTS, True))
            data.update(member.rights)
            data["can_be_edited"] = False
            data["is_anonymous"] = False
        elif member.status == "restricted":
            data.update(dict.fromkeys(RESTRICTED_RIGHTS, False))
            data["is_member"] = True
            data["until_date"] = member.until_date
        elif member.status == "kicked":
            data["until_date"] = member.until_date
        return data

    def log_action(self, action: str, **fields: Any) -> None:
        self.actions.append({"action": action, "at": self.clock.now_int(), **fields})

    # files ---------------------------------------------------------------------------------------

    def store_file(
        self,
        kind: str,
        content: bytes,
        *,
        extension: str,
        mime_type: str | None = None,
        file_name: str | None = None,
    ) -> StoredFile:
        number = self.next_counter()
        stored = StoredFile(
            # Deterministic, opaque-looking ids; file_unique_id is stable per stored file.
            file_id=f"{kind[:2].upper()}ACAgIAAx{number:010d}sandbox",
            file_unique_id=f"AgAD{number:08d}",
            file_path=f"{kind}/file_{number}.{extension}",
            content=content,
            mime_type=mime_type,
            file_name=file_name,
        )
        self.files[stored.file_id] = stored
        self.files_by_path[stored.file_path] = stored
        return stored

    # updates -------------------------------------------------------------------------------------

    def enqueue_update(self, bot: BotState, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Queue an update of `kind` for `bot`, unless the bot excluded that kind."""
        update = {"update_id": bot.next_update_id, kind: payload}
        bot.next_update_id += 1
        if kind not in bot.allowed_updates:
            return update
        bot.updates.append(update)
        bot.update_dates.append(self.clock.now())
        bot.new_update.set()
        return update

    def expire_updates(self, bot: BotState) -> None:
        cutoff = self.clock.now() - UPDATE_RETENTION_S
        while bot.update_dates and bot.update_dates[0] < cutoff:
            bot.update_dates.popleft()
            bot.updates.popleft()

    def confirm_updates(self, bot: BotState, offset: int) -> None:
        """Forget every update with update_id < offset (getUpdates' confirmation)."""
        while bot.updates and bot.updates[0]["update_id"] < offset:
            bot.updates.popleft()
            bot.update_dates.popleft()

    def drop_updates(self, bot: BotState) -> None:
        bot.updates.clear()
        bot.update_dates.clear()


ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
    "can_pin_messages",
)
RESTRICTED_RIGHTS = (
    "can_send_messages",
    "can_send_audios",
    "can_send_documents",
    "can_send_photos",
    "can_send_videos",
    "can_send_video_notes",
    "can_send_voice_notes",
    "can_send_polls",
    "can_send_other_messages",
    "can_add_web_page_previews",
    "can_react_to_messages",
    "can_edit_tag",
    "can_change_info",
    "can_invite_users",
    "can_pin_messages",
    "can_manage_topics",
)
