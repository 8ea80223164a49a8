"""notifymonitor: the outbox relay.

Claims due outbox rows (work-claiming: replicas never hold the same row), splits long texts into
Telegram-sized parts and sends them through the Bot API at Telegram's limits (the RatePlanner:
~30/s overall, 1/s per chat, 20/min per group). Each answer is classified by
`monitors.decisions.telegram`: 429 reschedules after `retry_after` without using an attempt, 403
marks the member unreachable, 400 "chat not found" and other permanent errors go to dead letters,
5xx and network errors back off until `NOTIFY_MAX_ATTEMPTS`, a 401/404 fails the tick and leaves
the rows queued.

Delivery is at-least-once: a row is 'sending' under a lease while in flight and `parts_sent` is
committed after every part, so after a crash only the part in flight may go out twice. The
same holds for a part Telegram took but answered too late (past the client's timeout, or the
connection broke): its outcome is unknown, so it counts as a failed attempt and is sent again,
and sendMessage has no idempotence key to stop the second copy. Such a retry sends at most one
extra copy of that one part per unanswered attempt; the row records it (last_error starts "no
answer", and stays, prefixed, once the row is sent) and `domos_notify_messages_total{outcome=
"possibly_duplicated"}` counts the rows sent after one.

The lease is renewed before every later part of a long message and with every progress write;
a write that changes nothing means the row is no longer ours (another replica took it over
after our lease ran out, or finished it): the sender stops at once, counts
`domos_leases_lost_total`, and leaves the row to its new owner.

A row that cannot be sent as stored (a text no part can hold: an HTML tag longer than 4096
characters, see monitors.decisions.text_split) is dead-lettered with the reason and counted
(outcome dead); the tick goes on with the other rows. A broadcast row (kind `broadcast`) whose
member is no longer entitled (payments.entitlement) when it is claimed is not sent: it is
dead-lettered with the reason and counted (outcome skipped).

A tick is a pipeline: sends start as the planner allows (the global limit paced evenly, a late
wake-up caught up by at most NOTIFY_GLOBAL_BURST slots), and the next batch is claimed beside the
sends while the held rows run low, so a backlog drains at the configured rate without pauses
between batches.

Every tick first reads the backlog (rows per status, age of the oldest due row) into the gauges
`domos_outbox_backlog` and `domos_outbox_oldest_due_age_seconds` (monitors.outbox).

Settings (environment): NOTIFY_GLOBAL_PER_S (30), NOTIFY_GLOBAL_BURST (3), NOTIFY_CHAT_PER_S
(1), NOTIFY_GROUP_PER_MIN (20), NOTIFY_MAX_ATTEMPTS (8), NOTIFY_BATCH_SIZE (300), NOTIFY_LEASE_S
(120), NOTIFY_CONCURRENCY (32). Replicas share Telegram's budget: give each 1/N of
NOTIFY_GLOBAL_PER_S.

Over 500 lines on purpose: the pipeline (claim, plan, send, record) is one loop whose parts share
the held rows and the planner's state; the pure parts already live in monitors.decisions.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from monitors import metrics, outbox
from monitors.decisions.rate_limit import RateLimits, RatePlanner, max_global_burst
from monitors.decisions.telegram import TelegramOutcome, Verdict, classify_telegram_response
from monitors.decisions.text_split import split_message
from monitors.outbox import OUTBOX_DELIVERY
from monitors.telegram_client import TelegramClient
from payments.entitlement import entitled_user
from runtime.config import Env, Settings
from runtime.errors import ConfigError, MonitorError
from runtime.monitor import Monitor
from runtime.retry import RetrySchedule

#: A chat that must wait longer than this is deferred to a later tick rather than waited for.
HOLD_LIMIT_S = 2.0
#: Claim the next batch while fewer chats are held than this many seconds of sends at the
#: global rate would use: the claim then lands before the relay runs dry.
LOOKAHEAD_S = 2.0
#: How long one tick keeps claiming more of a backlog.
REFILL_FOR_S = 30.0
#: Slots the global pacing may catch up after a late wake-up (NOTIFY_GLOBAL_BURST).
DEFAULT_GLOBAL_BURST = 3
#: last_error of an attempt whose part got no answer (timeout, lost connection): Telegram may
#: have delivered it, and the retry then sends a second copy (sendMessage has no idempotence
#: key). Kept, prefixed, on the row once it is sent, and counted (outcome possibly_duplicated).
UNANSWERED_PREFIX = "no answer"
UNANSWERED = (
    UNANSWERED_PREFIX + " to part {} of {} (timeout or connection lost): it may have been"
    " delivered, and the retry sends it again"
)
#: last_error of a broadcast row not sent because its member lapsed after it was queued.
NOT_ENTITLED = "not sent: the member is no longer entitled to broadcasts (subscription lapsed)"
DUE_WHERE = "(status IN ('queued', 'failed') AND next_attempt_at <= ?) OR status = 'sending'"


@dataclass(frozen=True)
class NotifySettings:
    limits: RateLimits
    schedule: RetrySchedule
    batch_size: int
    lease_s: float
    concurrency: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str], settings: Settings) -> NotifySettings:
        env = Env(environ)
        global_per_s = env.number("NOTIFY_GLOBAL_PER_S", 30.0, minimum=0.01)
        # A late wake-up may be caught up by a couple of slots; the sandbox and Telegram take
        # bursts far larger (30), so this never draws a 429 and keeps the rate from drifting.
        burst = env.integer(
            "NOTIFY_GLOBAL_BURST",
            min(DEFAULT_GLOBAL_BURST, max_global_burst(global_per_s)),
            minimum=1,
        )
        if burst > max_global_burst(global_per_s):
            raise ConfigError(
                "NOTIFY_GLOBAL_BURST", f"must not exceed one second of sends ({global_per_s:g})"
            )
        limits = RateLimits(
            global_per_s=global_per_s,
            chat_per_s=env.number("NOTIFY_CHAT_PER_S", 1.0, minimum=0.01),
            group_per_min=env.integer("NOTIFY_GROUP_PER_MIN", 20, minimum=1),
            global_burst=burst,
        )
        attempts = env.integer("NOTIFY_MAX_ATTEMPTS", OUTBOX_DELIVERY.max_attempts, minimum=1)
        return cls(
            limits=limits,
            schedule=replace(OUTBOX_DELIVERY, max_attempts=attempts),
            batch_size=env.integer("NOTIFY_BATCH_SIZE", 300, minimum=1),
            lease_s=env.number("NOTIFY_LEASE_S", 120.0, minimum=5.0),
            concurrency=env.integer("NOTIFY_CONCURRENCY", 32, minimum=1),
        )


@dataclass
class _Batch:
    """One claim: how many rows it leased, those to send, and by when to start them."""

    claimed: int
    start_by: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    #: Dead-lettered at once (chat known to be unreachable); final, so counted as handled.
    dead: int = 0


class _Held:
    """Claimed rows not started yet, per chat in claim order (FIFO within a chat)."""

    def __init__(self) -> None:
        self.queues: dict[int, deque[tuple[dict[str, Any], float]]] = {}
        self.rows = 0

    def __bool__(self) -> bool:
        return self.rows > 0

    def add(self, batch: _Batch) -> None:
        for row in batch.rows:
            self.queues.setdefault(row["chat_id"], deque()).append((row, batch.start_by))
        self.rows += len(batch.rows)

    def start_by(self, chat_id: int) -> float:
        return self.queues[chat_id][0][1]

    def pop(self, chat_id: int) -> dict[str, Any]:
        queue = self.queues[chat_id]
        row, _ = queue.popleft()
        if not queue:
            del self.queues[chat_id]
        self.rows -= 1
        return row

    def take_chat(self, chat_id: int) -> list[dict[str, Any]]:
        rows = [row for row, _ in self.queues.pop(chat_id)]
        self.rows -= len(rows)
        return rows

    def take_all(self) -> list[dict[str, Any]]:
        rows = [row for queue in self.queues.values() for row, _ in queue]
        self.queues.clear()
        self.rows = 0
        return rows


class NotifyMonitor(Monitor):
    name = "notifymonitor"
    interval_s = 1.0
    mode = "claiming"
    backoff_max_s = 60.0
    config_type = NotifySettings
    config: NotifySettings

    async def setup(self) -> None:
        self.planner = RatePlanner(self.config.limits)
        self.telegram = TelegramClient(self.ctx.settings)
        await self.telegram.open()

    async def teardown(self) -> None:
        await self.telegram.close()

    # --- one tick ---------------------------------------------------------------------------

    async def tick(self) -> int:
        clock = self.ctx.clock
        # Before claiming: the gauges show what waited when the tick began (alerts, dashboard).
        await outbox.refresh_backlog_gauges(self.db, clock.now())
        batch = await self._claim()
        if not batch.claimed:
            self.planner.forget_idle(clock.monotonic())
            return 0
        return await self._deliver(batch)

    async def _claim(self) -> _Batch:
        """Lease the next due rows; dead-letter those to chats known to be unreachable."""
        clock = self.ctx.clock
        # Taken before the claim, so the start-by time is never later than lease_s / 2 after it.
        start_by = clock.monotonic() + self.config.lease_s / 2
        now = clock.now()
        rows = await self.db.claim(
            "outbox",
            where=DUE_WHERE,
            params=(now,),
            order_by="priority, id",
            limit=self.config.batch_size,
            owner=self.ctx.owner,
            lease_s=self.config.lease_s,
            now=now,
        )
        batch = _Batch(claimed=len(rows), start_by=start_by)
        if not rows:
            return batch
        await self._mark_sending([row["id"] for row in rows], now)
        unreachable = await self._unreachable_chats(rows)
        lapsed = await self._lapsed_broadcasts(rows, now)
        for row in rows:
            if row["chat_id"] in unreachable:
                await self._finish_dead(row, "recipient unreachable (blocked earlier)", 403)
                metrics.NOTIFY_MESSAGES.labels(outcome="blocked").inc()
                batch.dead += 1
            elif row["id"] in lapsed:
                # Recipients were fixed when the broadcast was confirmed: one who lapsed while
                # it waited is not sent it, and the row says why (never dropped silently).
                await self._finish_dead(row, NOT_ENTITLED, None)
                self.log.info("broadcast_skipped", outbox_id=row["id"], user_id=row["user_id"])
                metrics.NOTIFY_MESSAGES.labels(outcome="skipped").inc()
                batch.dead += 1
            else:
                batch.rows.append(row)
        return batch

    async def _deliver(self, first: _Batch) -> int:
        """Send what `first` holds, claiming the next batch while the held rows run low.

        The next claim runs beside the sends, so the relay never stands idle between batches;
        it starts when fewer chats are held than LOOKAHEAD_S of sends at the global rate would
        use, and never while a whole batch is still held. A tick refills for REFILL_FOR_S, then
        finishes what it holds and returns, so the runner sees ticks end during a long drain.
        """
        clock = self.ctx.clock
        config = self.config
        lookahead_chats = max(1, math.ceil(LOOKAHEAD_S * config.limits.global_per_s))
        refill_until = clock.monotonic() + REFILL_FOR_S
        held = _Held()
        held.add(first)
        handled = first.dead
        more_due = first.claimed >= config.batch_size
        refill: asyncio.Task[_Batch] | None = None
        sends: dict[asyncio.Task[bool], int] = {}
        fault: BaseException | None = None
        while True:
            if fault is not None or self.ctx.stop_requested:
                more_due = False
                if held:
                    await self._release_quietly(held.take_all())
            elif (
                more_due
                and refill is None
                and clock.monotonic() < refill_until
                and len(held.queues) < lookahead_chats
                and held.rows < config.batch_size
            ):
                refill = asyncio.create_task(self._claim())
                more_due = False  # known again from what the claim returns
            min_wait = await self._start_sends(held, sends) if held else math.inf
            waiting: set[asyncio.Task[Any]] = set(sends)
            if refill is not None:
                waiting.add(refill)
            if not waiting:
                if not held:
                    break
                await asyncio.sleep(min_wait if min_wait < math.inf else 0)
                continue
            timeout = min_wait if held and min_wait < math.inf else None
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                if task is refill:
                    refill = None
                    try:
                        batch = task.result()
                    except Exception as exc:
                        fault = fault or exc
                        continue
                    held.add(batch)
                    handled += batch.dead
                    more_due = batch.claimed >= config.batch_size
                    continue
                del sends[task]
                try:
                    if task.result():
                        handled += 1
                except Exception as exc:
                    fault = fault or exc
        if fault is not None:
            raise fault
        return handled

    async def _start_sends(self, held: _Held, sends: dict[asyncio.Task[bool], int]) -> float:
        """Start every send the planner allows now; the wait until the next one may start."""
        clock = self.ctx.clock
        now = clock.monotonic()
        wait = self.planner.global_wait_s(now)
        if wait > 0:
            return wait
        busy = set(sends.values())
        min_wait = math.inf
        for chat_id in list(held.queues):
            if len(sends) >= self.config.concurrency:
                break
            if chat_id in busy:
                continue
            if now >= held.start_by(chat_id):
                # Held so long its lease could soon be free to another replica: give it back.
                await self._release_quietly(held.take_chat(chat_id))
                now = clock.monotonic()
                continue
            wait = self.planner.try_acquire(chat_id, now)
            if wait > HOLD_LIMIT_S:
                # A paused chat (429) or a group out of its minute budget: give its rows back
                # for later instead of holding the tick (and the lease) open.
                await self._defer(held.take_chat(chat_id), wait)
                now = clock.monotonic()
                continue
            if wait > 0:
                min_wait = min(min_wait, wait)
                continue
            busy.add(chat_id)
            sends[asyncio.create_task(self._send(held.pop(chat_id)))] = chat_id
            wait = self.planner.global_wait_s(now)
            if wait > 0:
                return min(min_wait, wait)
        return min_wait

    # --- one message ------------------------------------------------------------------------

    async def _send(self, row: dict[str, Any]) -> bool:
        """Send the remaining parts of one row; True when the row reached a final state."""
        try:
            calls = self._prepare(row)
        except Exception as exc:
            # This row's own fault (a text no part can hold, unusable markup): retrying cannot
            # fix it, and failing the tick would stall it and the rows beside it.
            return await self._dead_letter(row, f"cannot be sent as stored: {exc}")
        if not calls:
            return await self._dead_letter(row, "empty text")
        chat_id = row["chat_id"]
        sent = row["parts_sent"]
        message_id = row["telegram_message_id"]
        first = True
        while sent < len(calls):
            if not first:
                await self._acquire(chat_id)
                # The lease is renewed before every later part, so a long message keeps it; a
                # lease another replica holds now means that replica sends the rest.
                if not await self._renew_lease(row):
                    return self._lease_lost(row, sent)
            first = False
            status, body = await self.telegram.call("sendMessage", calls[sent])
            self.planner.answered(chat_id, self.ctx.clock.monotonic())
            outcome = classify_telegram_response(status, body)
            if status is None:
                outcome = replace(outcome, description=UNANSWERED.format(sent + 1, len(calls)))
            if outcome.verdict is not Verdict.DELIVERED:
                return await self._failed(row, outcome, sent)
            sent += 1
            message_id = outcome.message_id or message_id
            metrics.NOTIFY_PARTS_SENT.inc()
            self.ctx.progress()  # a backlog tick runs for many seconds: show it is working
            if sent < len(calls) and not await self._record_progress(row, sent, message_id):
                return self._lease_lost(row, sent)
        if not await self._finish_sent(row, sent, message_id):
            return self._lease_lost(row, sent)
        metrics.NOTIFY_MESSAGES.labels(outcome="sent").inc()
        if _unanswered_before(row):
            self.log.warning(
                "message_possibly_duplicated", outbox_id=row["id"], error=row["last_error"]
            )
            metrics.NOTIFY_MESSAGES.labels(outcome="possibly_duplicated").inc()
        return True

    def _prepare(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The sendMessage parameters of every part of the row, each checked to encode."""
        calls = [
            self._params(row, part)
            for part in split_message(row["text"], parse_mode=row["parse_mode"])
        ]
        for params in calls:
            json.dumps(params)
        return calls

    async def _dead_letter(self, row: dict[str, Any], reason: str) -> bool:
        if await self._finish_dead(row, reason, None):
            self.log.warning("message_dead_lettered", outbox_id=row["id"], error=reason)
            metrics.NOTIFY_MESSAGES.labels(outcome="dead").inc()
            return True
        return self._lease_lost(row, row["parts_sent"])

    def _lease_lost(self, row: dict[str, Any], sent: int) -> bool:
        """Our write changed nothing: another replica took the row over (our lease ran out)
        or finished it. Stop here; its record stands. Not a final state handled by us."""
        metrics.LEASES_LOST.labels(monitor=self.name).inc()
        self.log.warning("outbox_lease_lost", outbox_id=row["id"], parts_sent=sent)
        return False

    async def _acquire(self, chat_id: int) -> None:
        clock = self.ctx.clock
        while True:
            wait = self.planner.try_acquire(chat_id, clock.monotonic())
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    @staticmethod
    def _params(row: dict[str, Any], text: str) -> dict[str, Any]:
        params: dict[str, Any] = {"chat_id": row["chat_id"], "text": text}
        if row["parse_mode"]:
            params["parse_mode"] = row["parse_mode"]
        if row["reply_markup"]:
            params["reply_markup"] = row["reply_markup"]
        if row["disable_web_page_preview"]:
            params["link_preview_options"] = {"is_disabled": True}
        return params

    async def _failed(self, row: dict[str, Any], outcome: TelegramOutcome, sent: int) -> bool:
        verdict = outcome.verdict
        now = self.ctx.clock.now()
        log = self.log.bind(outbox_id=row["id"], chat_id=row["chat_id"], verdict=verdict.value)
        if verdict is Verdict.RETRY_AFTER:
            retry_after = outcome.retry_after_s or 1.0
            self.planner.pause_chat(row["chat_id"], self.ctx.clock.monotonic() + retry_after)
            if not await self._reschedule(
                row, sent, now + timedelta(seconds=retry_after), outcome, 429
            ):
                return self._lease_lost(row, sent)
            log.warning("message_rate_limited", retry_after_s=retry_after)
            metrics.NOTIFY_MESSAGES.labels(outcome="rate_limited").inc()
            return False
        if verdict is Verdict.CHAT_MIGRATED:
            written = await self.db.execute(
                "UPDATE outbox SET chat_id = ?, status = 'queued', parts_sent = ?,"
                " next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                " WHERE id = ? AND lease_owner = ?",
                (outcome.migrate_to_chat_id, sent, now, now, row["id"], self.ctx.owner),
            )
            if not written:
                return self._lease_lost(row, sent)
            log.info("message_chat_migrated", new_chat_id=outcome.migrate_to_chat_id)
            metrics.NOTIFY_MESSAGES.labels(outcome="migrated").inc()
            return False
        if verdict is Verdict.BOT_FAULT:
            await self._release([row], sent)
            raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
        if verdict is Verdict.RECIPIENT_BLOCKED:
            await self._mark_unreachable(row, now)
            if not await self._finish_dead(row, outcome.description, 403, sent):
                return self._lease_lost(row, sent)
            log.info("recipient_blocked", description=outcome.description)
            metrics.NOTIFY_MESSAGES.labels(outcome="blocked").inc()
            return True
        if verdict is Verdict.DEAD_LETTER:
            if not await self._finish_dead(row, outcome.description, 400, sent):
                return self._lease_lost(row, sent)
            log.warning("message_dead_lettered", description=outcome.description)
            metrics.NOTIFY_MESSAGES.labels(outcome="dead").inc()
            return True
        # BACKOFF: count the attempt; dead-letter when they are used up.
        attempts = row["attempts"] + 1
        retry_at = self.config.schedule.next_attempt_at(now, attempts)
        if retry_at is None:
            if not await self._finish_dead(
                row,
                f"gave up after {attempts} attempts: {outcome.description}",
                None,
                sent,
                attempts,
            ):
                return self._lease_lost(row, sent)
            log.warning("message_dead_lettered", attempts=attempts)
            metrics.NOTIFY_MESSAGES.labels(outcome="dead").inc()
            return True
        written = await self.db.execute(
            "UPDATE outbox SET status = 'failed', attempts = ?, parts_sent = ?,"
            " next_attempt_at = ?, last_error = ?, last_error_code = NULL,"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            " WHERE id = ? AND lease_owner = ?",
            (attempts, sent, retry_at, outcome.description[:500], now, row["id"], self.ctx.owner),
        )
        if not written:
            return self._lease_lost(row, sent)
        log.info("message_retry_scheduled", attempts=attempts, retry_at=retry_at.isoformat())
        metrics.NOTIFY_MESSAGES.labels(outcome="retried").inc()
        return False

    # --- SQL --------------------------------------------------------------------------------

    async def _mark_sending(self, ids: list[int], now: datetime) -> None:
        marks = ", ".join("?" * len(ids))
        await self.db.execute(
            f"UPDATE outbox SET status = 'sending', updated_at = ? WHERE id IN ({marks})"
            " AND lease_owner = ?",
            (now, *ids, self.ctx.owner),
        )

    async def _unreachable_chats(self, rows: list[dict[str, Any]]) -> set[int]:
        chats = sorted({row["chat_id"] for row in rows if row["chat_id"] > 0})
        if not chats:
            return set()
        marks = ", ".join("?" * len(chats))
        found = await self.db.fetchall(
            f"SELECT telegram_id FROM users WHERE is_reachable = ? AND telegram_id IN ({marks})",
            (False, *chats),
        )
        return {row["telegram_id"] for row in found}

    async def _lapsed_broadcasts(self, rows: list[dict[str, Any]], now: datetime) -> set[int]:
        """Ids of the broadcast rows whose member is not entitled now (payments.entitlement);
        a row without a user is matched by its chat, and one without either is lapsed."""
        ids = [row["id"] for row in rows if row["kind"] == outbox.BROADCAST_KIND]
        if not ids:
            return set()
        marks = ", ".join("?" * len(ids))
        found = await self.db.fetchall(
            f"SELECT o.id FROM outbox o WHERE o.id IN ({marks}) AND NOT EXISTS ("
            " SELECT 1 FROM users u WHERE (u.id = o.user_id"
            " OR (o.user_id IS NULL AND u.telegram_id = o.chat_id))"
            f" AND {entitled_user('u')})",
            (*ids, now),
        )
        return {row["id"] for row in found}

    async def _mark_unreachable(self, row: dict[str, Any], now: datetime) -> None:
        await self.db.execute(
            "UPDATE users SET is_reachable = ?, blocked_at = ?, updated_at = ?"
            " WHERE (telegram_id = ? OR id = ?) AND is_reachable = ?",
            (False, now, now, row["chat_id"], row["user_id"] or -1, True),
        )

    async def _renew_lease(self, row: dict[str, Any]) -> bool:
        """Hold the row for another NOTIFY_LEASE_S; False when this process holds it no more."""
        now = self.ctx.clock.now()
        written = await self.db.execute(
            "UPDATE outbox SET lease_expires_at = ?, updated_at = ?"
            " WHERE id = ? AND lease_owner = ? AND status = 'sending'",
            (self._lease_until(now), now, row["id"], self.ctx.owner),
        )
        return written == 1

    def _lease_until(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.config.lease_s)

    async def _record_progress(self, row: dict[str, Any], sent: int, message_id: Any) -> bool:
        """Commit the parts sent so far and renew the lease; False when the row is not ours."""
        now = self.ctx.clock.now()
        written = await self.db.execute(
            "UPDATE outbox SET parts_sent = ?, telegram_message_id = ?, lease_expires_at = ?,"
            " updated_at = ? WHERE id = ? AND lease_owner = ? AND status = 'sending'",
            (sent, message_id, self._lease_until(now), now, row["id"], self.ctx.owner),
        )
        return written == 1

    async def _finish_sent(self, row: dict[str, Any], sent: int, message_id: Any) -> bool:
        """Mark the row sent; an earlier unanswered attempt stays on record in last_error."""
        now = self.ctx.clock.now()
        note = None
        if _unanswered_before(row):
            note = f"sent; an earlier attempt may have delivered a copy too: {row['last_error']}"
        written = await self.db.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?, parts_sent = ?,"
            " telegram_message_id = ?, attempts = attempts + 1, last_error = ?,"
            " last_error_code = NULL, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            " WHERE id = ? AND lease_owner = ?",
            (now, sent, message_id, note and note[:500], now, row["id"], self.ctx.owner),
        )
        return written == 1

    async def _finish_dead(
        self,
        row: dict[str, Any],
        error: str,
        code: int | None,
        sent: int | None = None,
        attempts: int | None = None,
    ) -> bool:
        now = self.ctx.clock.now()
        written = await self.db.execute(
            "UPDATE outbox SET status = 'dead', last_error = ?, last_error_code = ?,"
            " parts_sent = ?, attempts = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ? AND lease_owner = ?",
            (
                error[:500],
                code,
                row["parts_sent"] if sent is None else sent,
                row["attempts"] + 1 if attempts is None else attempts,
                now,
                row["id"],
                self.ctx.owner,
            ),
        )
        return written == 1

    async def _reschedule(
        self,
        row: dict[str, Any],
        sent: int,
        at: datetime,
        outcome: TelegramOutcome,
        code: int,
    ) -> bool:
        written = await self.db.execute(
            "UPDATE outbox SET status = 'queued', parts_sent = ?, next_attempt_at = ?,"
            " last_error = ?, last_error_code = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ? AND lease_owner = ?",
            (
                sent,
                at,
                outcome.description[:500],
                code,
                self.ctx.clock.now(),
                row["id"],
                self.ctx.owner,
            ),
        )
        return written == 1

    async def _defer(self, rows: list[dict[str, Any]], wait_s: float) -> None:
        """Reschedule unsent rows after `wait_s`; no attempt is counted."""
        now = self.ctx.clock.now()
        later = now + timedelta(seconds=wait_s)
        for row in rows:
            await self.db.execute(
                "UPDATE outbox SET status = 'queued', next_attempt_at = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND lease_owner = ?",
                (later, now, row["id"], self.ctx.owner),
            )
        metrics.NOTIFY_MESSAGES.labels(outcome="deferred").inc(len(rows))

    async def _release_quietly(self, rows: list[dict[str, Any]]) -> None:
        """Release held rows; if that fails (database down) their leases expire instead."""
        try:
            await self._release(rows)
        except Exception as exc:
            self.log.warning("outbox_release_failed", rows=len(rows), error=str(exc))

    async def _release(self, rows: list[dict[str, Any]], sent: int | None = None) -> None:
        """Give rows back unsent (stop, deadline, bot fault): no attempt is counted."""
        now = self.ctx.clock.now()
        for row in rows:
            await self.db.execute(
                "UPDATE outbox SET status = 'queued', parts_sent = ?, lease_owner = NULL,"
                " lease_expires_at = NULL, updated_at = ? WHERE id = ? AND lease_owner = ?",
                (row["parts_sent"] if sent is None else sent, now, row["id"], self.ctx.owner),
            )


def _unanswered_before(row: dict[str, Any]) -> bool:
    """Whether the row's last failed attempt sent a part that got no answer."""
    return str(row["last_error"] or "").startswith(UNANSWERED_PREFIX)


MONITOR = NotifyMonitor
