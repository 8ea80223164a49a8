"""The catch-all: anything no other handler took gets a helpful reply, never a crash."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from monitors import texts


def build_router() -> Router:
    router = Router(name="fallback")
    router.message.register(unknown_message, F.chat.type == "private")
    router.message.register(ignore)
    router.callback_query.register(unknown_button)
    return router


async def unknown_message(message: Message) -> None:
    await message.answer(texts.UNKNOWN)


async def ignore(message: Message) -> None:
    """Messages outside private chats that no router stored (e.g. service messages)."""


async def unknown_button(query: CallbackQuery) -> None:
    await query.answer(texts.UNKNOWN_BUTTON, show_alert=True)
