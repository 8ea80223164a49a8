"""The monthly survey as a state machine whose state lives in the database.

A survey row (`surveys`, one per member and month) and its answers (`survey_responses`) are the
whole state: the next question is the first one without an answer, so a restart (or another
replica) continues exactly where the member stopped. Choice questions are answered with inline
buttons, free-text questions with a message.

Callback data: `survey:open` (monitors.texts.SURVEY_OPEN_CALLBACK, the button of monthly_anket's
invite) opens or resumes the member's survey; `survey:<survey id>:<question index>:<option
index>` answers a choice question.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from runtime.db import AsyncDatabase, Row
from services.bot.callback_ids import parse_id


@dataclass(frozen=True)
class Question:
    key: str
    text: str
    #: Button labels; empty for a free-text question.
    options: tuple[str, ...] = ()

    @property
    def is_text(self) -> bool:
        return not self.options


QUESTIONS: tuple[Question, ...] = (
    Question("deals", "Сколько сделок вы закрыли в этом месяце?", ("0", "1–2", "3–5", "6+")),
    Question(
        "satisfaction",
        "Насколько вы довольны сообществом (1 — плохо, 5 — отлично)?",
        ("1", "2", "3", "4", "5"),
    ),
    Question("suggestion", "Что нам улучшить? Напишите ответ одним сообщением."),
)


def next_question(answered: set[str], questions: tuple[Question, ...] = QUESTIONS) -> int | None:
    """Index of the first unanswered question, or None when the survey is complete."""
    for index, question in enumerate(questions):
        if question.key not in answered:
            return index
    return None


def survey_month(now: datetime, tz: ZoneInfo) -> str:
    """'YYYY-MM' of the member's local month (the key monthly_anket uses too)."""
    return now.astimezone(tz).strftime("%Y-%m")


def answer_callback(survey_id: int, question_index: int, option_index: int) -> str:
    return f"survey:{survey_id}:{question_index}:{option_index}"


def parse_answer_callback(data: str) -> tuple[int, int, int] | None:
    parts = data.split(":")
    if len(parts) != 4 or parts[0] != "survey":
        return None
    survey_id, question, option = (parse_id(part) for part in parts[1:])
    if survey_id is None or question is None or option is None:
        return None
    return survey_id, question, option


# --- persistence -----------------------------------------------------------------------------


async def open_survey(db: AsyncDatabase, user_id: int) -> Row | None:
    """The member's survey still waiting for answers (the latest month first)."""
    return await db.fetchone(
        "SELECT * FROM surveys WHERE user_id = ? AND status IN ('sent', 'in_progress')"
        " ORDER BY month DESC LIMIT 1",
        (user_id,),
    )


async def ensure_survey(db: AsyncDatabase, user_id: int, month: str, now: datetime) -> Row:
    """This month's survey of the member, created if monthly_anket has not sent it yet."""
    await db.execute(
        "INSERT INTO surveys (user_id, month, status, sent_at) VALUES (?, ?, 'sent', ?)"
        " ON CONFLICT (user_id, month) DO NOTHING",
        (user_id, month, now),
    )
    row = await db.fetchone(
        "SELECT * FROM surveys WHERE user_id = ? AND month = ?", (user_id, month)
    )
    assert row is not None
    return row


async def answered_keys(db: AsyncDatabase, survey_id: int) -> set[str]:
    rows = await db.fetchall(
        "SELECT question_key FROM survey_responses WHERE survey_id = ?", (survey_id,)
    )
    return {row["question_key"] for row in rows}


@dataclass(frozen=True)
class Recorded:
    #: False: the question was no longer open (answered meanwhile, or the survey closed).
    accepted: bool
    #: The next question's index; None when this answer completed the survey.
    following: int | None = None


async def record_answer(
    db: AsyncDatabase, survey_id: int, index: int, answer: str, now: datetime
) -> Recorded:
    """Store the answer to question `index` if it is the one the survey waits for; move on.

    The check and the insert are one transaction under the survey row's lock, and an answer is
    never replaced: of two buttons of one question pressed at once (a double tap), the first is
    kept and the second refused, so the next question is asked once.
    """
    question = QUESTIONS[index]
    async with db.transaction() as tx:
        open_ = await tx.execute(
            "UPDATE surveys SET updated_at = updated_at"
            " WHERE id = ? AND status IN ('sent', 'in_progress')",
            (survey_id,),
        )
        if not open_:
            return Recorded(accepted=False)
        rows = await tx.fetchall(
            "SELECT question_key FROM survey_responses WHERE survey_id = ?", (survey_id,)
        )
        answered = {row["question_key"] for row in rows}
        if next_question(answered) != index:
            return Recorded(accepted=False)
        inserted = await tx.execute(
            "INSERT INTO survey_responses (survey_id, question_key, answer, answered_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (survey_id, question_key) DO NOTHING",
            (survey_id, question.key, answer, now),
        )
        if not inserted:
            return Recorded(accepted=False)
        following = next_question(answered | {question.key})
        if following is None:
            await tx.execute(
                "UPDATE surveys SET status = 'answered', answered_at = ?, updated_at = ?"
                " WHERE id = ? AND status <> 'answered'",
                (now, now, survey_id),
            )
        else:
            await tx.execute(
                "UPDATE surveys SET status = 'in_progress', updated_at = ?"
                " WHERE id = ? AND status = 'sent'",
                (now, survey_id),
            )
    return Recorded(accepted=True, following=following)
