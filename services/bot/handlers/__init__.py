"""Routers of the bot, in the order the dispatcher tries them (see `build_routers`)."""

from __future__ import annotations

from aiogram import Router

from services.bot.handlers import chats, commands, events, fallback, survey


def build_routers() -> list[Router]:
    # Group and channel traffic first (it is stored, never answered), the catch-all last.
    return [
        chats.build_router(),
        commands.build_router(),
        events.build_router(),
        survey.build_router(),
        fallback.build_router(),
    ]
