"""The Bot API method table. Telegram matches method names case-insensitively."""

from __future__ import annotations

from services.sandbox.telegram import chats, messages, polling
from services.sandbox.telegram.service import Method

_METHODS: dict[str, Method] = {
    "getMe": messages.get_me,
    "sendMessage": messages.send_message,
    "editMessageText": messages.edit_message_text,
    "deleteMessage": messages.delete_message,
    "sendChatAction": messages.send_chat_action,
    "answerCallbackQuery": messages.answer_callback_query,
    "sendDocument": messages.send_document,
    "sendPhoto": messages.send_photo,
    "getFile": messages.get_file,
    "setMyCommands": messages.set_my_commands,
    "getMyCommands": messages.get_my_commands,
    "deleteMyCommands": messages.delete_my_commands,
    "getUpdates": polling.get_updates,
    "setWebhook": polling.set_webhook,
    "deleteWebhook": polling.delete_webhook,
    "getWebhookInfo": polling.get_webhook_info,
    "getChat": chats.get_chat,
    "getChatMember": chats.get_chat_member,
    "banChatMember": chats.ban_chat_member,
    "unbanChatMember": chats.unban_chat_member,
    "approveChatJoinRequest": chats.approve_chat_join_request,
    "declineChatJoinRequest": chats.decline_chat_join_request,
    "createChatInviteLink": chats.create_chat_invite_link,
    "editChatInviteLink": chats.edit_chat_invite_link,
    "revokeChatInviteLink": chats.revoke_chat_invite_link,
    "exportChatInviteLink": chats.export_chat_invite_link,
    "leaveChat": chats.leave_chat,
}

METHODS: dict[str, Method] = {name.lower(): handler for name, handler in _METHODS.items()}
SUPPORTED_METHODS = tuple(sorted(_METHODS))
