"""Updates whose handling met a database outage are handled again once it is back, not lost.

Polling confirms every update to Telegram with the next getUpdates, whatever its handler did
(aiogram's `_listen_updates` moves the offset past each update it yields): Telegram never sends
again an update that failed, so a /start, a payment command or a payer's join request that met
PostgreSQL down was gone for good. This outer middleware of `dp.update` takes them instead:

- a handler that raises `DatabaseUnavailable` or `TransientError` (runtime.errors: the server
  cannot be reached, the pool timed out, the connection broke, SQLite busy or unreadable, a
  deadlock) has its update deferred: kept with the time it first failed. Integrity errors and
  bugs are not: they go on to the dispatcher's error handler as before;
- a user's updates in a chat (aiogram's FSM key) are handled one after another, in order,
  live and replayed alike: while one waits, the later ones queue behind it without being tried;
- a replay task feeds waiting updates back through `Dispatcher.feed_update` with capped backoff
  (at once when a live update finds the database answering again), chats side by side and each
  chat's in order. Polling goes on meanwhile: other chats are not held up;
- on stop, what still waits (and any update whose handler the stop deadline cut short) is
  written to a spool file under DOMOS_DATA_DIR, which the next start reads back before polling.
  The spool is also rewritten while updates wait, so a crash loses at most the last second;
- an update still waiting after KEEP_FOR_S (Telegram itself keeps an update no longer), or
  beyond MAX_WAITING, is given up: logged at error level with its content type and user, and
  counted. Never silently dropped.

A replay runs the handler from the start: what it did at Telegram before the database failed
it does again. A member may see a message twice if a handler had sent it before a later query
failed; today's handlers query first and answer last, so in practice it is the join request:
approved, then the membership write fails; the replay's approval is refused by Telegram as
decided (USER_ALREADY_PARTICIPANT), so the payer is in once and the "approved" note may not come.
A /status replay may make a second join-request link. That is the lesser harm: the alternative
is a member never answered, a payment link never given, a payer never let in. Handlers
idempotent by key stay so, the replay being the same update: /start registers by telegram_id, a
payment reuses its open row and idempotence key (within BOT_PAYMENT_REUSE_S), a survey answer is
kept once per question, an event registration once per member. A replayed button press may be
too old for Telegram to take its answer: `LateCallbackAnswers` lets the handler go on.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import structlog
from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError
from pydantic import ValidationError

from runtime.errors import DatabaseUnavailable, TransientError
from runtime.retry import RetrySchedule
from services.bot.metrics import (
    REPLAY_KEY,
    UPDATES_DEFERRED,
    UPDATES_GIVEN_UP,
    UPDATES_REPLAYED,
    UPDATES_WAITING,
)

log = structlog.get_logger("bot")

#: What a handler may meet while the database is away; retrying the whole update may succeed.
OUTAGE_ERRORS = (DatabaseUnavailable, TransientError)
#: Pause before each replay round after failed ones (no attempt limit: KEEP_FOR_S bounds it).
SCHEDULE = RetrySchedule(base_s=1.0, cap_s=15.0, max_attempts=sys.maxsize)
#: Telegram keeps an undelivered update 24 hours; an answer later than that helps no one.
KEEP_FOR_S = 24 * 3600.0
#: Updates kept waiting at most (memory and spool); beyond, new ones are given up.
MAX_WAITING = 10_000
#: Chats replayed side by side (each chat's updates one after another).
REPLAY_CONCURRENCY = 8
#: How often the spool is rewritten while updates wait.
PERSIST_EVERY_S = 1.0
#: True while a handler runs for a replayed update.
REPLAYING: ContextVar[bool] = ContextVar("bot_replaying", default=False)


def spool_path(data_dir: Path) -> Path:
    return data_dir / "bot" / "deferred_updates.jsonl"


def order_key(update: Update) -> str:
    """Updates with the same key are handled one after another, in order: a user's in a chat
    (aiogram's FSM key, FSMStrategy.USER_IN_CHAT), else the chat's, else the update's own."""
    context = UserContextMiddleware.resolve_event_context(update)
    chat_id = context.chat.id if context.chat is not None else None
    user_id = context.user.id if context.user is not None else None
    if chat_id is None and user_id is None:
        return f"update:{update.update_id}"
    return f"chat:{chat_id}:user:{user_id}"


def describe(update: Update) -> dict[str, Any]:
    """Log fields naming an update: its type, content type, user and chat."""
    context = UserContextMiddleware.resolve_event_context(update)
    try:
        update_type = update.event_type
    except UpdateTypeLookupError:  # a type newer than this aiogram: still logged
        update_type = "unknown"
    message = (
        update.message or update.edited_message or update.channel_post or update.edited_channel_post
    )
    return {
        "update_id": update.update_id,
        "update_type": update_type,
        "content_type": _text(message.content_type) if message is not None else update_type,
        "user_id": context.user.id if context.user is not None else None,
        "chat_id": context.chat.id if context.chat is not None else None,
    }


def _text(value: Any) -> str:
    """An aiogram enum member as Telegram spells it (`text`, not `ContentType.TEXT`)."""
    return str(getattr(value, "value", value))


@dataclass(eq=False)  # compared by identity: a queue removes the very entry replayed
class Deferred:
    update: Update
    key: str
    #: Unix time of the first failure (wall clock: it survives a restart through the spool).
    first_failed_at: float
    error: str
    attempts: int = 0
    #: Set by the middleware when a replay met the outage again.
    failed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "update": self.update.model_dump(mode="json", exclude_unset=True, by_alias=True),
            "key": self.key,
            "first_failed_at": self.first_failed_at,
            "attempts": self.attempts,
            "error": self.error,
        }


Feed = Callable[[Deferred], Awaitable[Any]]


class Redelivery(BaseMiddleware):
    """The outer middleware (register it inside the metrics one) and the replay loop."""

    def __init__(self, spool: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.spool_file = spool
        self.clock = clock
        self._queues: dict[str, list[Deferred]] = {}
        #: Live updates in their handler: spooled too if a stop cuts them short.
        self._running: dict[int, Update] = {}
        #: Per key, the turn the key's next update waits for.
        self._tails: dict[str, asyncio.Future[None]] = {}
        #: Update ids read from the spool: Telegram may send them again (never confirmed).
        self._restored_ids: set[int] = set()
        self._wake = asyncio.Event()  # something to replay, or the database answers again
        self._stopping = False
        self._dirty = False
        self._persisted_at = 0.0

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    # --- the middleware ---------------------------------------------------------------------

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if not isinstance(event, Update):
            return await handler(event, data)
        replayed = data.get(REPLAY_KEY)
        if isinstance(replayed, Deferred):
            async with self._turn(replayed.key):
                replaying = REPLAYING.set(True)
                try:
                    return await handler(event, data)
                except OUTAGE_ERRORS as exc:
                    replayed.failed = True
                    replayed.error = repr(exc)
                    return UNHANDLED
                finally:
                    REPLAYING.reset(replaying)
        if event.update_id in self._restored_ids:
            log.info("update_redelivered_skipped", **describe(event))
            return UNHANDLED
        key = order_key(event)
        self._running[event.update_id] = event
        try:
            async with self._turn(key):
                if key in self._queues:
                    self._defer(event, key, reason="queued_behind", error=None)
                    return UNHANDLED
                try:
                    result = await handler(event, data)
                except OUTAGE_ERRORS as exc:
                    self._defer(event, key, reason="database_unavailable", error=exc)
                    return UNHANDLED
        finally:
            self._running.pop(event.update_id, None)
        if self._queues:
            self._wake.set()  # the database answers: replay without waiting out the backoff
        return result

    @contextlib.asynccontextmanager
    async def _turn(self, key: str) -> AsyncIterator[None]:
        """The key's updates one after another, in the order they came (live and replayed).

        Here rather than aiogram's events isolation (Dispatcher(events_isolation=...)), which
        locks in the FSM middleware, outside the bot's own: an update waiting for its turn there
        would be neither in flight for the stop's drain nor spooled."""
        previous = self._tails.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = mine
        try:
            if previous is not None:
                await asyncio.shield(previous)
            yield
        finally:
            mine.set_result(None)
            if self._tails.get(key) is mine:
                del self._tails[key]

    def _defer(
        self,
        update: Update,
        key: str,
        *,
        reason: str,
        error: BaseException | None,
        first_failed_at: float | None = None,
    ) -> None:
        fields = describe(update)
        error_text = repr(error) if error is not None else "queued behind the chat's updates"
        if self.waiting >= MAX_WAITING:
            self._give_up(fields, "too_many", error_text, deferred_for_s=0.0, attempts=0)
            return
        entry = Deferred(update, key, first_failed_at or self.clock(), error_text)
        self._insert(entry)
        UPDATES_DEFERRED.labels(type=fields["update_type"]).inc()
        log.warning(
            "update_deferred", reason=reason, error=error_text, waiting=self.waiting, **fields
        )

    def _insert(self, entry: Deferred) -> None:
        """Into its chat's queue in update_id order (Telegram numbers updates in order)."""
        queue = self._queues.setdefault(entry.key, [])
        bisect.insort(queue, entry, key=lambda item: item.update.update_id)
        UPDATES_WAITING.set(self.waiting)
        self._dirty = True
        self._wake.set()

    def _give_up(
        self,
        fields: dict[str, Any],
        reason: str,
        error: str,
        *,
        deferred_for_s: float,
        attempts: int,
    ) -> None:
        UPDATES_GIVEN_UP.labels(reason=reason).inc()
        log.error(
            "update_given_up",
            reason=reason,
            error=error,
            deferred_for_s=round(deferred_for_s, 1),
            attempts=attempts,
            **fields,
        )

    # --- the spool --------------------------------------------------------------------------

    def restore(self, bot: Bot) -> int:
        """Read the spool of the last run into the queues; the number of updates read."""
        if self.spool_file is None or not self.spool_file.exists():
            return 0
        restored = 0
        for number, line in enumerate(self.spool_file.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                update = Update.model_validate(item["update"], context={"bot": bot})
                entry = Deferred(
                    update,
                    str(item["key"]),
                    float(item["first_failed_at"]),
                    str(item["error"]),
                    int(item["attempts"]),
                )
            except (ValueError, KeyError, TypeError, ValidationError) as exc:
                # Kept in the log whole: an operator can still act on it by hand.
                UPDATES_GIVEN_UP.labels(reason="unreadable").inc()
                log.error(
                    "update_given_up",
                    reason="unreadable",
                    spool=str(self.spool_file),
                    line=number,
                    content=line[:2000],
                    error=repr(exc),
                )
                continue
            if entry.update.update_id in self._restored_ids:
                continue
            self._restored_ids.add(entry.update.update_id)
            self._insert(entry)
            restored += 1
        log.info("deferred_updates_restored", count=restored, spool=str(self.spool_file))
        return restored

    def spool(self) -> int:
        """Write what still waits, and the live updates a stop cut short, to the spool; the
        number written. Called once handlers in flight are done or the deadline is past."""
        cut_short = [
            update
            for update in self._running.values()
            if update.update_id not in self._queued_ids()
        ]
        for update in cut_short:
            self._defer(update, order_key(update), reason="stopped", error=None)
        count = self._persist()
        if count:
            log.warning(
                "deferred_updates_spooled",
                count=count,
                cut_short=len(cut_short),
                spool=str(self.spool_file),
            )
        return count

    def _queued_ids(self) -> set[int]:
        return {entry.update.update_id for queue in self._queues.values() for entry in queue}

    def _persist(self) -> int:
        """Rewrite the spool with every waiting update (removed when none waits)."""
        entries = [entry for queue in self._queues.values() for entry in queue]
        self._dirty = False
        self._persisted_at = time.monotonic()
        if self.spool_file is None:
            return len(entries)
        if not entries:
            self.spool_file.unlink(missing_ok=True)
            return 0
        self.spool_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.spool_file.with_name(self.spool_file.name + ".partial")
        with partial.open("w") as out:
            for entry in entries:
                out.write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, self.spool_file)
        return len(entries)

    def _persist_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._persisted_at >= PERSIST_EVERY_S:
            self._persist()

    # --- the replay loop --------------------------------------------------------------------

    async def replay_forever(self, feed: Feed) -> None:
        """Replay waiting updates through `feed` (Dispatcher.feed_update with the entry under
        REPLAY_KEY) until `stop()`."""
        failed_rounds = 0
        while not self._stopping:
            if not self._queues:
                failed_rounds = 0
                if self._dirty:
                    self._persist()
                await self._sleep(None)
                continue
            # An update just deferred met the outage: never replayed at once.
            await self._sleep(SCHEDULE.delay_s(failed_rounds + 1))
            if self._stopping:
                break
            if await self._round(feed):
                failed_rounds = 0
            else:
                failed_rounds += 1
                log.warning(
                    "replay_paused",
                    waiting=self.waiting,
                    failed_rounds=failed_rounds,
                    delay_s=SCHEDULE.delay_s(failed_rounds + 1),
                )

    async def _sleep(self, timeout_s: float | None) -> None:
        """Until woken (an update deferred, a live update handled, a stop) or the timeout. A
        live update handled does not prove the database back (it may not have used it): such
        a wake ends a pause no sooner than SCHEDULE.base_s, so it cannot make rounds spin."""
        self._wake.clear()
        started = time.monotonic()
        deadline = None if timeout_s is None else started + timeout_s
        while True:
            now = time.monotonic()
            if self._stopping or (
                self._wake.is_set() and (deadline is None or now - started >= SCHEDULE.base_s)
            ):
                return
            wait_s = PERSIST_EVERY_S
            if deadline is not None:
                wait_s = min(wait_s, deadline - now)
                if wait_s <= 0:
                    return
            if self._wake.is_set():  # woken too soon: sleep out the shortest pause
                wait_s = min(wait_s, started + SCHEDULE.base_s - now)
                await asyncio.sleep(wait_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
            self._persist_if_due()

    async def _round(self, feed: Feed) -> bool:
        """Replay every chat's waiting updates, in order; False if the outage was met again
        (then chats not yet started wait for the next round)."""
        outage = asyncio.Event()
        slots = asyncio.Semaphore(REPLAY_CONCURRENCY)

        async def replay_chat(key: str) -> None:
            async with slots:
                while not outage.is_set() and not self._stopping:
                    queue = self._queues.get(key)
                    if not queue:
                        return
                    entry = queue[0]
                    if not await self._replay(entry, feed):
                        outage.set()
                        return
                    queue.remove(entry)
                    if not queue:
                        del self._queues[key]
                    UPDATES_WAITING.set(self.waiting)
                    self._dirty = True
                    self._persist_if_due()

        await asyncio.gather(*(replay_chat(key) for key in list(self._queues)))
        return not outage.is_set()

    async def _replay(self, entry: Deferred, feed: Feed) -> bool:
        """One update fed again: True once done with it (handled, failed otherwise, given up),
        False if it met the outage again."""
        fields = describe(entry.update)
        waited_s = self.clock() - entry.first_failed_at
        if waited_s > KEEP_FOR_S:
            self._give_up(
                fields, "too_old", entry.error, deferred_for_s=waited_s, attempts=entry.attempts
            )
            return True
        entry.failed = False
        entry.attempts += 1
        try:
            await feed(entry)
        except Exception as exc:  # the dispatcher's error handler logs handler errors; not this
            log.error("update_failed", error=repr(exc), exc_info=exc, replayed=True, **fields)
            return True
        if entry.failed:
            log.info("update_replay_deferred", attempts=entry.attempts, error=entry.error, **fields)
            return False
        UPDATES_REPLAYED.labels(type=fields["update_type"]).inc()
        log.info(
            "update_replayed", attempts=entry.attempts, deferred_for_s=round(waited_s, 1), **fields
        )
        return True

    async def stop(self, task: asyncio.Task[None], timeout_s: float) -> None:
        """Let the replay in flight finish (within `timeout_s`), then end the loop."""
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LateCallbackAnswers(BaseRequestMiddleware):
    """Session middleware: in a replayed update, a button's answer Telegram refuses (a query
    is answerable for a short while only) does not end the handler. The spinner is long gone;
    what the handler does next (the survey's next question, the payment link) still matters."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if not REPLAYING.get() or method.__api_method__ != AnswerCallbackQuery.__api_method__:
            return await make_request(bot, method)
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as exc:
            log.info("callback_answer_too_late", error=exc.message)
            # What a request returns here is the method's result (see undecodable_updates).
            return cast(Response[TelegramType], True)
