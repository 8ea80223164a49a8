"""The monthly survey: opened by /survey or monthly_anket's button, answered with buttons and
text. The state is the survey row and its answers (services.bot.survey), so it survives
restarts and works across replicas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from aiogram import Bot, F, Router
from aiogram.filters import Command, Filter
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder

from monitors import texts
from runtime.db import AsyncDatabase, Row
from services.bot import repository
from services.bot import survey as fsm
from services.bot.config import BotSettings

log = structlog.get_logger("bot")


class AwaitingTextAnswer(Filter):
    """Matches a private text message when the member's open survey waits for a text answer;
    hands the survey and the question to the handler."""

    async def __call__(self, message: Message, db: AsyncDatabase) -> bool | dict[str, Any]:
        if message.from_user is None or not message.text or message.text.startswith("/"):
            return False
        user = await repository.find_user(db, message.from_user.id)
        if user is None:
            return False
        survey = await fsm.open_survey(db, user["id"])
        if survey is None:
            return False
        index = fsm.next_question(await fsm.answered_keys(db, survey["id"]))
        if index is None or not fsm.QUESTIONS[index].is_text:
            return False
        return {"survey": survey, "question_index": index}


def build_router() -> Router:
    router = Router(name="survey")
    router.message.filter(F.chat.type == "private")
    router.message.register(open_by_command, Command("survey"))
    router.message.register(text_answer, AwaitingTextAnswer())
    router.callback_query.register(open_by_button, F.data == texts.SURVEY_OPEN_CALLBACK)
    router.callback_query.register(button_answer, F.data.startswith("survey:"))
    return router


def question_keyboard(survey_id: int, index: int) -> InlineKeyboardMarkup | None:
    question = fsm.QUESTIONS[index]
    if question.is_text:
        return None
    builder = InlineKeyboardBuilder()
    for option_index, label in enumerate(question.options):
        builder.button(
            text=label, callback_data=fsm.answer_callback(survey_id, index, option_index)
        )
    builder.adjust(len(question.options))
    return builder.as_markup()


async def ask(bot: Bot, chat_id: int, survey_id: int, index: int) -> None:
    question = fsm.QUESTIONS[index]
    prefix = f"Вопрос {index + 1} из {len(fsm.QUESTIONS)}. "
    await bot.send_message(
        chat_id, prefix + question.text, reply_markup=question_keyboard(survey_id, index)
    )


async def _open(
    bot: Bot,
    chat_id: int,
    user_row_id: int,
    db: AsyncDatabase,
    now: datetime,
    bot_settings: BotSettings,
) -> str | None:
    """Ask the next question of the member's survey; returns a text to send instead, if any."""
    survey = await fsm.open_survey(db, user_row_id)
    if survey is None:
        if await repository.live_subscription(db, user_row_id, now) is None:
            return texts.SURVEY_FOR_MEMBERS
        month = fsm.survey_month(now, bot_settings.runtime.timezone)
        survey = await fsm.ensure_survey(db, user_row_id, month, now)
        if survey["status"] not in ("sent", "in_progress"):
            return texts.SURVEY_ALREADY_DONE
    index = fsm.next_question(await fsm.answered_keys(db, survey["id"]))
    if index is None:
        return texts.SURVEY_ALREADY_DONE
    await ask(bot, chat_id, survey["id"], index)
    return None


async def open_by_command(
    message: Message,
    bot: Bot,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
) -> None:
    assert message.from_user is not None
    now = clock()
    member = await repository.register_user(db, message.from_user, now)
    reply = await _open(bot, message.chat.id, member.id, db, now, bot_settings)
    if reply is not None:
        await message.answer(reply)


async def open_by_button(
    query: CallbackQuery,
    bot: Bot,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    bot_settings: BotSettings,
) -> None:
    now = clock()
    member = await repository.register_user(db, query.from_user, now)
    await query.answer()
    reply = await _open(bot, query.from_user.id, member.id, db, now, bot_settings)
    if reply is not None:
        await bot.send_message(query.from_user.id, reply)


async def button_answer(
    query: CallbackQuery, bot: Bot, db: AsyncDatabase, clock: Callable[[], datetime]
) -> None:
    parsed = fsm.parse_answer_callback(query.data or "")
    user = await repository.find_user(db, query.from_user.id)
    survey = None
    if parsed is not None and user is not None:
        survey = await db.fetchone(
            "SELECT * FROM surveys WHERE id = ? AND user_id = ?", (parsed[0], user["id"])
        )
    if parsed is None or survey is None:
        if parsed is None:
            log.warning("callback_data_rejected", data=query.data)
        await query.answer(texts.UNKNOWN_BUTTON, show_alert=True)
        return
    _, index, option = parsed
    expected = fsm.next_question(await fsm.answered_keys(db, survey["id"]))
    valid = index < len(fsm.QUESTIONS) and option < len(fsm.QUESTIONS[index].options)
    if survey["status"] not in ("sent", "in_progress") or expected != index or not valid:
        # A button of an earlier question or of a finished survey.
        await query.answer(texts.SURVEY_STALE)
        return
    answer = fsm.QUESTIONS[index].options[option]
    recorded = await fsm.record_answer(db, survey["id"], index, answer, clock())
    if not recorded.accepted:
        # The question was answered meanwhile: another button pressed at the same moment.
        await query.answer(texts.SURVEY_STALE)
        return
    await query.answer()
    await _continue(bot, query.from_user.id, survey, index, recorded.following)


async def text_answer(
    message: Message,
    bot: Bot,
    db: AsyncDatabase,
    clock: Callable[[], datetime],
    survey: Row,
    question_index: int,
) -> None:
    assert message.text is not None
    answer = message.text.strip()
    if not answer:
        await message.answer(texts.SURVEY_EMPTY_ANSWER)
        return
    recorded = await fsm.record_answer(db, survey["id"], question_index, answer, clock())
    if not recorded.accepted:
        await message.answer(texts.SURVEY_STALE)
        return
    await _continue(bot, message.chat.id, survey, question_index, recorded.following)


async def _continue(bot: Bot, chat_id: int, survey: Row, index: int, following: int | None) -> None:
    log.info("survey_answered", survey_id=survey["id"], question=fsm.QUESTIONS[index].key)
    if following is None:
        log.info("survey_completed", survey_id=survey["id"], month=survey["month"])
        await bot.send_message(chat_id, texts.SURVEY_DONE)
    else:
        await ask(bot, chat_id, survey["id"], following)
