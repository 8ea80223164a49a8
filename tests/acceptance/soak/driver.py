"""The soak driver: many members live through a few months against the real programs.

What runs: the sandbox (Telegram + YooKassa, `domos sandbox` with a state file) and botapi
(`domos botapi`, the YooKassa webhook) as processes; the bot (aiogram dispatcher, polling the
sandbox) and the monitors (their real classes, ticked) in this process, on a business clock
the driver moves (the sandbox clock moved alongside), so that months pass in seconds.

Members are simulated from seeded life stories (join, pay, autopay off/on, declined renewals,
refunds, leaving, blocking the bot, lapsing and paying again, duplicated and late webhooks,
Telegram 429s and timeouts, restarts of the bot, botapi and the sandbox). After each simulated
day the invariants are checked from outside, against the sandbox's state and a ledger the
driver keeps itself (who paid when, what was refunded):

- access: a member in the paid chat is entitled by the ledger (paid period, or its grace);
- let in: an entitled member who wants in (and is reachable) is in the chat, never banned;
- charged once: every succeeded provider payment is one the member made, or an auto-charge
  with consent for a period not yet paid;
- notified: each payment applied reaches its member (delivered, or dead-lettered with a reason);
  no outbox row is left undecided, no row is lost;
- nothing lost: every member's /subscribe got an answer.

`python -m tests.acceptance.soak.driver --backend sqlite --members 100 --days 120 --seed 7`
prints the figures and every finding; tests/acceptance/soak/test_soak.py runs a small one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[3]
DOMOS = [sys.executable, "-m", "runtime.cli"]
CHAT_ID = -1009700000001
PRICE_MINOR = 150000
PERIOD = timedelta(days=30)
GRACE = timedelta(days=3)
CHARGE_AHEAD = timedelta(hours=24)
DAY = timedelta(days=1)
#: Steps of a simulated day (local hours, Moscow = UTC+3): reminders at 10:00, survey at 11:00.
STEP_HOURS = (6, 12, 20)
LINK = re.compile(r"https://t\.me/\+\S+")
CHECKOUT = re.compile(r"/_sandbox/yookassa/checkout/([0-9a-f-]{36})")
MONITORS = (
    "payment_monitor",
    "recurrent_payments",
    "tsmonitor",
    "ban_monitor",
    "notifymonitor",
    "eventsmonitor",
    "monthly_anket",
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the ledger: what the driver knows from outside ------------------------------------------


@dataclass
class Paid:
    """One payment the member made (by hand) or was charged (saved card), as the driver saw it."""

    provider_id: str
    at: datetime
    auto: bool
    #: The period it bought: [start, end), computed by the driver's own rule.
    start: datetime | None = None
    end: datetime | None = None
    refunded: str | None = None  # None, "full" or "partial"


@dataclass
class Member:
    telegram_id: int
    story: dict[str, Any]
    registered: bool = False
    paid: list[Paid] = field(default_factory=list)
    #: The end of what the ledger says is paid (None: never paid or ended by a refund).
    end: datetime | None = None
    autopay: bool = False
    card_saved: bool = False
    wants_in: bool = False
    blocked: bool = False
    left: bool = False
    seen_messages: int = 0
    links: list[str] = field(default_factory=list)
    open_checkout: str | None = None
    subscribe_asked: int = 0
    subscribe_answered: int = 0
    charge_declines: int = 0
    survey_acknowledged: int = 0
    #: What happened to them, as the driver saw it: the story told in a finding.
    log: list[str] = field(default_factory=list)
    #: Every text the member read (the sandbox forgets its history when it restarts).
    received: list[str] = field(default_factory=list)

    def entitled(self, now: datetime) -> bool:
        return self.end is not None and now < self.end + GRACE

    def paid_through(self, now: datetime) -> bool:
        return self.end is not None and now < self.end


@dataclass
class Finding:
    day: int
    at: str
    invariant: str
    member: int | None
    detail: str

    def line(self) -> str:
        return f"day {self.day} {self.at} [{self.invariant}] member {self.member}: {self.detail}"


@dataclass
class Figures:
    member_days: int = 0
    payments: int = 0
    charges: int = 0
    refunds: int = 0
    restarts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    seconds: Counter[str] = field(default_factory=Counter)


# --- the programs ----------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    argv: list[str]
    environ: dict[str, str]
    log_path: Path
    ready_url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*DOMOS, *self.argv],
                cwd=ROOT,
                env=self.environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill9(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


class BusinessClock:
    """Real time plus an offset the driver moves; the monitors' and the bot's `now`."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def move_to(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)

    # runtime.monitor.Clock
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return self.now().timestamp()

    async def wait(self, event: asyncio.Event, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)
        return event.is_set()


class Soak:
    def __init__(
        self,
        *,
        backend: str,
        members: int,
        days: int,
        seed: int,
        workdir: Path,
        pg_url: str | None = None,
        start: datetime | None = None,
        chaos: bool = True,
        verbose: bool = False,
        step_hours: tuple[int, ...] = STEP_HOURS,
        outages: bool = True,
        telegram_timeouts: bool = True,
        join_spread: int | None = None,
    ) -> None:
        self.outages = outages
        #: Members join within this many days (default: the first third of the run).
        self.join_spread = join_spread
        #: Telegram answers held past the client's timeout (about 10 s of waiting each).
        self.telegram_timeouts = telegram_timeouts
        self.backend = backend
        self.days = days
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.pg_url = pg_url
        self.chaos = chaos
        self.verbose = verbose
        self.step_hours = step_hours
        # A period starting Jan 31 (local noon), month ends, and grace across Feb.
        self.start = start or datetime(2027, 1, 20, 9, 0, tzinfo=UTC)
        self.clock = BusinessClock()
        self.findings: list[Finding] = []
        self.figures = Figures()
        self.day = 0
        base_id = 810_000_000 + seed % 1000 * 10_000
        self.members = [Member(base_id + n, self._story(n)) for n in range(members)]
        self.by_tg = {m.telegram_id: m for m in self.members}
        self.known_payments: dict[str, dict[str, Any]] = {}
        self.old_webhooks: list[dict[str, Any]] = []
        self.sent_count: dict[int, int] = {}
        self.paying: list[Member] = []
        self._members_cache: dict[int, str] = {}
        self.dirty = True
        self.bot_down_until: int | None = None
        self.undecided: dict[int, int] = {}
        self.reported: set[int] = set()
        #: event id -> (title, starts_at); (event id, member) -> index of their next message
        self.events: dict[int, tuple[str, datetime]] = {}
        self.registered: dict[tuple[int, int], int] = {}

    # --- stories ------------------------------------------------------------------------------

    def _story(self, n: int) -> dict[str, Any]:
        r = self.rng
        days = self.days
        story: dict[str, Any] = {
            "join_day": r.randrange(0, self.join_spread or max(1, days // 3)),
            "pays": r.random() < 0.92,
            "autopay_off_day": r.randrange(days) if r.random() < 0.3 else None,
            "autopay_on_day": None,
            "declines": None,
            "refund": None,
            "leave_day": r.randrange(days) if r.random() < 0.1 else None,
            "return_after": r.randrange(1, 10) if r.random() < 0.6 else None,
            "block_day": r.randrange(days) if r.random() < 0.1 else None,
            "unblock_after": r.randrange(2, 20) if r.random() < 0.6 else None,
            # Days after the grace ended (negative: during the grace) a lapsed member pays.
            "repay_after": r.choice([-2, -1, 0, 0, 0, 1, 3, 10, 20]) if r.random() < 0.6 else None,
            "manual_renew_day": r.randrange(days) if r.random() < 0.1 else None,
            "double_subscribe": r.random() < 0.15,
            "events": r.random() < 0.4,
            "surveys": r.random() < 0.5,
        }
        if story["autopay_off_day"] is not None and r.random() < 0.5:
            story["autopay_on_day"] = story["autopay_off_day"] + r.randrange(1, 30)
        if r.random() < 0.25:
            story["declines"] = r.choice(
                [
                    ["insufficient_funds"],
                    ["insufficient_funds", "insufficient_funds"],
                    ["insufficient_funds"] * 5,
                    ["card_expired"],
                    ["general_decline", "issuer_unavailable"],
                ]
            )
        if r.random() < 0.15:
            story["refund"] = (r.choice(["full", "partial"]), r.randrange(days))
        return story

    # --- plumbing -----------------------------------------------------------------------------

    async def control(self, method: str, path: str, body: Any = None, ok: bool = True) -> Any:
        if method == "POST":
            self.dirty = True
        for attempt in range(60):
            try:
                async with self.http.request(
                    method, f"{self.sandbox_base}/_sandbox{path}", json=body
                ) as resp:
                    data = await resp.json()
                    if ok and resp.status != 200:
                        raise AssertionError(f"{method} {path}: {resp.status} {data}")
                    return data
            except (TimeoutError, aiohttp.ClientConnectionError):
                if attempt == 59:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    def environ(self) -> dict[str, str]:
        from services.sandbox import (
            DEFAULT_BOT_TOKEN,
            DEFAULT_YOOKASSA_SECRET_KEY,
            DEFAULT_YOOKASSA_SHOP_ID,
        )

        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DB_", "DATABASE_", "POSTGRES_", "DOMOS_CLOCK"))
        }
        environ.update(
            {
                "DB_TYPE": self.backend,
                "DOMOS_DATA_DIR": str(self.workdir / "data"),
                "DB_POOL_MIN_SIZE": "1",
                "DB_POOL_MAX_SIZE": "6",
                "DB_POOL_TIMEOUT_S": "10",
                "SQLITE_BUSY_TIMEOUT_S": "10",
                "TELEGRAM_API_URL": self.sandbox_base,
                "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
                "YOOKASSA_API_URL": self.sandbox_base,
                "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
                "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
                "BOT_POLLING_TIMEOUT_S": "1",
                "BOT_DRAIN_TIMEOUT_S": "3",
                "BOTAPI_WORKERS": "1",
                "BOTAPI_PROVIDER_TIMEOUT_S": "3",
                "PAID_CHAT_IDS": str(CHAT_ID),
                "DOMOS_RUN_DIR": str(self.workdir / "run"),
                "LOG_LEVEL": "warning",
                "LOG_FORMAT": "json",
                "TS_REMINDER_AT": "10:00",
                "NOTIFY_GLOBAL_PER_S": "1000",
                "NOTIFY_CHAT_PER_S": "1000",
                "NOTIFY_GROUP_PER_MIN": "100000",
                "NOTIFY_CONCURRENCY": "8",
            }
        )
        if self.pg_url:
            environ["DATABASE_URL"] = self.pg_url
        return environ

    async def setup(self) -> None:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.sandbox_port, self.botapi_port = free_port(), free_port()
        self.sandbox_base = f"http://127.0.0.1:{self.sandbox_port}"
        self.env = self.environ()
        await asyncio.to_thread(
            subprocess.run,
            [*DOMOS, "db", "upgrade"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
        )
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.sandbox = Process(
            "sandbox",
            [
                "sandbox",
                "--port",
                str(self.sandbox_port),
                "--no-limits",
                "--webhook-url",
                f"http://127.0.0.1:{self.botapi_port}/yookassa/webhook",
                "--state-file",
                str(self.workdir / "sandbox-state.json"),
            ],
            self.env,
            self.workdir / "sandbox.log",
            f"{self.sandbox_base}/_sandbox/health",
        )
        self.botapi = Process(
            "botapi",
            ["botapi", "--port", str(self.botapi_port)],
            self.env,
            self.workdir / "botapi.log",
            f"http://127.0.0.1:{self.botapi_port}/health",
        )
        await self._start(self.sandbox)
        await self._start(self.botapi)
        await self.control(
            "POST", "/telegram/chats", {"id": CHAT_ID, "type": "supergroup", "title": "Агенты"}
        )
        self.clock.move_to(self.start)
        await self.sync_clock()

        from runtime.config import Settings
        from runtime.db import async_database

        self.settings = Settings.from_env(self.env)
        self.db = async_database(self.settings)
        await self.db.open()
        await self.db.execute(
            "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)",
            ("month", "Месяц", PRICE_MINOR, 30),
        )
        await self._start_monitors()
        await self._start_bot()

    async def _start(self, process: Process) -> None:
        process.start()
        deadline = time.monotonic() + 60
        while True:
            assert process.process is not None
            if process.process.poll() is not None:
                raise AssertionError(f"{process.name} exited: {process.log_path.read_text()}")
            try:
                async with self.http.get(process.ready_url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{process.name} did not start")
            await asyncio.sleep(0.1)

    async def sync_clock(self) -> None:
        await self.control("POST", "/clock", {"set": self.clock.now().timestamp()})

    async def _start_monitors(self) -> None:
        import structlog

        from runtime.monitor import MonitorContext, build_config
        from runtime.monitor.loader import load_monitor

        self.monitors: dict[str, Any] = {}
        for name in MONITORS:
            cls = load_monitor(name, "monitors")
            ctx = MonitorContext(
                settings=self.settings,
                db=self.db,
                log=structlog.get_logger(f"monitors.{name}").bind(monitor=name),
                clock=self.clock,
                owner=f"soak:{name}:{time.monotonic_ns()}",
                stop_event=asyncio.Event(),
                config=build_config(cls, self.env, self.settings),
            )
            monitor = cls(ctx)
            await monitor.setup()
            self.monitors[name] = monitor

    async def _stop_monitors(self) -> None:
        for monitor in self.monitors.values():
            await monitor.teardown()

    async def _start_bot(self) -> None:
        from payments.client import YooKassaClient
        from runtime.db import async_database
        from services.bot import repository
        from services.bot.app import build_bot, build_dispatcher
        from services.bot.config import BotSettings
        from services.bot.metrics import InFlight
        from services.bot.redelivery import Redelivery, spool_path

        settings = BotSettings.from_env(self.env)
        self.bot_db = async_database(settings.runtime, name="bot")
        await self.bot_db.open()
        self.bot_payments = YooKassaClient(settings.runtime)
        await self.bot_payments.open()
        self.in_flight = InFlight()
        self.redelivery = Redelivery(spool_path(settings.runtime.db.data_dir))
        self.bot = build_bot(settings)
        await repository.mark_paid_chats(self.bot_db, settings.paid_chat_ids, self.clock.now())
        me = await self.bot.me()
        self.dp = build_dispatcher(
            db=self.bot_db,
            settings=settings,
            payments=self.bot_payments,
            clock=self.clock.now,
            in_flight=self.in_flight,
            redelivery=self.redelivery,
        )
        self.dp["bot_username"] = me.username or ""
        self.redelivery.restore(self.bot)
        self.polling = asyncio.create_task(
            self.dp.start_polling(
                self.bot, polling_timeout=1, handle_signals=False, close_bot_session=False
            )
        )

    async def _stop_bot(self) -> None:
        await self.dp.stop_polling()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(self.polling, 10)
        await self.in_flight.wait_idle(5)
        self.redelivery.spool()
        await self.bot.session.close()
        await self.bot_payments.close()
        await self.bot_db.close()

    async def teardown(self) -> None:
        if self.bot_down_until is None:
            with contextlib.suppress(Exception):
                await self._stop_bot()
        with contextlib.suppress(Exception):
            await self._stop_monitors()
        with contextlib.suppress(Exception):
            await self.db.close()
        self.botapi.stop()
        self.sandbox.stop()
        await self.http.close()

    async def settle(self) -> None:
        """Until the bot has taken and handled every update."""
        began = time.monotonic()
        try:
            await self._settle()
        finally:
            took = time.monotonic() - began
            self.figures.seconds["settle"] += took
            self.figures.actions["settles"] += 1
            if took > 1 and self.verbose:
                print(f"  slow settle {took:.1f}s", flush=True)

    async def _settle(self) -> None:
        if self.bot_down_until is not None:
            return  # nobody answers
        if not self.dirty and self.in_flight.count == 0:
            return  # nothing reached Telegram since the last settle that the bot could hear of
        self.dirty = False
        quiet = 0
        deadline = time.monotonic() + 30
        while quiet < 2 and time.monotonic() < deadline:
            bots = await self.control("GET", "/telegram/bots")
            pending = sum(int(b.get("pending_update_count") or 0) for b in bots)
            waiting = self.redelivery.waiting if hasattr(self.redelivery, "waiting") else 0
            quiet = quiet + 1 if pending == 0 and self.in_flight.count == 0 and not waiting else 0
            await asyncio.sleep(0.01)

    async def tick(self, *names: str) -> None:
        for name in names or MONITORS:
            began = time.monotonic()
            try:
                if await self.monitors[name].tick():
                    self.dirty = True
            except Exception as exc:  # a failed tick is retried next step, as the runner does
                if self.verbose:
                    print(f"  tick {name} failed: {exc!r}")
                self.figures.actions[f"tick_failed:{name}"] += 1
            self.figures.seconds[name] += time.monotonic() - began

    # --- member actions -----------------------------------------------------------------------

    async def say(self, member: Member, text: str) -> None:
        member.log.append(f"{self.clock.now():%m-%d %H:%M} says {text}")
        await self.control(
            "POST", "/telegram/messages", {"user_id": member.telegram_id, "text": text}
        )
        self.figures.actions[text.split()[0]] += 1

    async def new_messages(self, member: Member) -> list[dict[str, Any]]:
        sent = await self.control("GET", f"/telegram/sent?chat_id={member.telegram_id}")
        new = sent[member.seen_messages :]
        member.seen_messages = len(sent)
        return list(new)

    async def read(self, member: Member) -> list[dict[str, Any]]:
        messages = await self.new_messages(member)
        for message in messages:
            text = message.get("text") or ""
            if CHECKOUT.search(text) or "подписк" in text.lower() or "оплат" in text.lower():
                member.subscribe_answered += 1
            member.links += LINK.findall(text)
            member.log.append(f"{self.clock.now():%m-%d %H:%M} got {text[:60]!r}")
            member.received.append(text)
            if text.startswith("Автопродление отключено"):
                member.autopay = False
                # A charge sent before the stop may still go through: one is allowed.
                member.charge_in_flight = "ещё проверяется" in text  # type: ignore[attr-defined]
            elif text.startswith("Автопродление включено") or "автопродление включено" in text:
                member.autopay = member.card_saved
        return messages

    async def pay(self, member: Member) -> None:
        """/subscribe (twice at once for some), answered in `complete_payments`."""
        await self.say(member, "/subscribe")
        member.subscribe_asked += 1
        if member.story["double_subscribe"]:
            await self.say(member, "/subscribe")
            member.subscribe_asked += 1
        self.paying.append(member)

    async def complete_payments(self) -> None:
        """Each payer reads the bot's answer and pays at the checkout it names."""
        paying, self.paying = self.paying, []
        for member in paying:
            checkouts = []
            for message in await self.read(member):
                match = CHECKOUT.search(message.get("text") or "")
                if match:
                    checkouts.append(match.group(1))
            if len(set(checkouts)) > 1:
                self.find("charged_once", member, f"two checkouts at once: {checkouts}")
            if checkouts:
                await self.checkout(member, checkouts[-1])

    async def checkout(self, member: Member, provider_id: str) -> bool:
        payment = await self.control(
            "POST", f"/yookassa/payments/{provider_id}/succeed", {}, ok=False
        )
        if payment.get("status") != "succeeded":
            return False
        now = self.clock.now()
        saved = bool((payment.get("payment_method") or {}).get("saved"))
        self.ledger_paid(member, provider_id, now, auto=False)
        member.log.append(f"{now:%m-%d %H:%M} paid {provider_id} saved={saved}")
        if saved:
            member.card_saved = True
            member.autopay = True
            member.method_id = payment["payment_method"]["id"]
            if member.story["declines"] and not getattr(member, "declines_set", False):
                member.declines_set = True  # type: ignore[attr-defined]
                await self.control(
                    "POST",
                    f"/yookassa/payment_methods/{member.method_id}/declines",
                    {"reasons": member.story["declines"]},
                )
        member.wants_in = True
        member.left = False
        self.figures.payments += 1
        return True

    def ledger_paid(self, member: Member, provider_id: str, at: datetime, *, auto: bool) -> None:
        entry = Paid(provider_id, at, auto)
        if member.end is not None and at < member.end + GRACE:
            entry.start = member.end
        else:
            entry.start = at
        entry.end = entry.start + PERIOD
        member.end = entry.end
        member.paid.append(entry)

    def find(self, invariant: str, member: Member | None, detail: str) -> None:
        if member is not None and self.verbose:
            detail += "\n    " + "\n    ".join(member.log[-25:]) + f"\n    story {member.story}"
        finding = Finding(
            self.day,
            self.clock.now().strftime("%Y-%m-%d %H:%M"),
            invariant,
            member.telegram_id if member else None,
            detail,
        )
        self.findings.append(finding)
        if self.verbose:
            print("FINDING", finding.line(), flush=True)

    # --- the day ------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        try:
            for day in range(self.days):
                self.day = day
                for hour in self.step_hours:
                    moment = self.start.replace(hour=0) + self.day * DAY + timedelta(hours=hour - 3)
                    self.clock.move_to(moment)
                    await self.sync_clock()
                    await self.step(hour)
                await self.end_of_day()
                if self.verbose:
                    print(f"day {self.day} {self.clock.now():%Y-%m-%d} done", flush=True)
        finally:
            await self.teardown()

    async def step(self, hour: int) -> None:
        if self.bot_down_until is not None and self.day >= self.bot_down_until:
            await self._start_bot()
            self.bot_down_until = None
        if self.chaos:
            await self.chaos_step()
        if hour == self.step_hours[0]:
            await self.morning()
        await self.settle()
        await self.tick()
        await self.observe_provider()
        await self.tick("notifymonitor")
        await self.react()
        await self.settle()
        await self.tick("ban_monitor", "notifymonitor")
        await self.react()

    async def morning(self) -> None:
        """Each member's deeds of the day, in a shuffled order."""
        order = list(self.members)
        self.rng.shuffle(order)
        if self.day % 9 == 2:
            await self.publish_event()
        for member in order:
            await self.live(member)
        await self.settle()
        await self.complete_payments()
        await self.register_for_events()

    async def live(self, member: Member) -> None:
        story, day, now = member.story, self.day, self.clock.now()
        if day == story["join_day"]:
            await self.control(
                "POST", "/telegram/users", {"user_id": member.telegram_id, "first_name": "Агент"}
            )
            await self.say(member, "/start")
            member.registered = True
            if story["pays"]:
                await self.pay(member)
            return
        if not member.registered:
            return
        if story["block_day"] == day and not member.blocked:
            await self.control("POST", f"/telegram/users/{member.telegram_id}/block", {})
            member.blocked = True
        elif (
            member.blocked
            and story["unblock_after"] is not None
            and day == story["block_day"] + story["unblock_after"]
        ):
            await self.control("POST", f"/telegram/users/{member.telegram_id}/unblock", {})
            member.blocked = False
            await self.say(member, "/start")
        if member.blocked:
            return
        if story["autopay_off_day"] == day:
            await self.say(member, "/cancel_autorenew")
        if story["autopay_on_day"] == day:
            await self.say(member, "/autorenew_on")
        if story["leave_day"] == day and member.wants_in:
            await self.control(
                "POST",
                f"/telegram/chats/{CHAT_ID}/leave",
                {"user_id": member.telegram_id},
                ok=False,
            )
            member.wants_in = False
            member.left = True
        if (
            member.left
            and story["return_after"] is not None
            and story["leave_day"] is not None
            and day == story["leave_day"] + story["return_after"]
        ):
            member.wants_in = True  # end_of_day asks /status for the way back in
            member.left = False
        if story["manual_renew_day"] == day and member.paid_through(now):
            await self.pay(member)
            return
        refund = story["refund"]
        if refund is not None and refund[1] == day and member.paid:
            await self.refund(member, refund[0])
        # Lapsed: pays again after a while, if the story says so.
        if (
            story["pays"]
            and member.paid
            and not member.paid_through(now)
            and story["repay_after"] is not None
            and member.end is not None
            and now >= member.end + GRACE + story["repay_after"] * DAY
            and getattr(member, "repaid_at", None) != member.end
        ):
            member.repaid_at = member.end  # type: ignore[attr-defined]
            await self.pay(member)

    async def publish_event(self) -> None:
        """Staff publish an event three days ahead (as the admin writes it)."""
        starts = (self.clock.now() + 3 * DAY).replace(hour=16, minute=0, second=0, microsecond=0)
        title = f"Встреча {len(self.events) + 1}"
        event_id = await self.db.fetchval(
            "INSERT INTO events (title, url, starts_at, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (title, "https://example.org/meet", starts, self.clock.now(), self.clock.now()),
        )
        self.events[int(event_id)] = (title, starts)

    async def register_for_events(self) -> None:
        """Members who like events open /events and register for the next one."""
        now = self.clock.now()
        upcoming = {eid: ev for eid, ev in self.events.items() if ev[1] - now > 1.5 * DAY}
        if not upcoming:
            return
        askers = [
            m
            for m in self.members
            if m.story["events"]
            and m.registered
            and not m.blocked
            and m.paid_through(now)
            and not any((eid, m.telegram_id) in self.registered for eid in upcoming)
        ]
        for member in askers:
            await self.say(member, "/events")
        await self.settle()
        for member in askers:
            for message in await self.read(member):
                rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
                for row in rows:
                    for button in row:
                        data = button.get("callback_data") or ""
                        if not data.startswith("event:reg:"):
                            continue
                        event_id = int(data.rsplit(":", 1)[1])
                        if event_id not in upcoming:
                            continue
                        await self.control(
                            "POST",
                            "/telegram/callback_queries",
                            {
                                "user_id": member.telegram_id,
                                "message_id": message["message_id"],
                                "data": data,
                            },
                        )
                        self.registered[(event_id, member.telegram_id)] = len(member.received)
                        self.figures.actions["event_registration"] += 1
        await self.settle()

    async def check_events(self, now: datetime) -> None:
        """A registrant entitled a day before the event got a reminder naming it."""
        for (event_id, telegram_id), index in list(self.registered.items()):
            title, starts = self.events[event_id]
            if now < starts:
                continue
            del self.registered[(event_id, telegram_id)]
            member = self.by_tg[telegram_id]
            if member.blocked or not member.entitled(starts - DAY + timedelta(hours=2)):
                continue
            if not member.entitled(starts - DAY - timedelta(hours=10)):
                continue
            await self.read(member)
            if not any(title in text for text in member.received[index:]):
                row = await self.db.fetchone(
                    "SELECT r.status FROM event_registrations r JOIN users u ON u.id = r.user_id"
                    " WHERE r.event_id = ? AND u.telegram_id = ?",
                    (event_id, telegram_id),
                )
                self.find(
                    "notified",
                    member,
                    f"registered for {title} ({starts:%m-%d %H:%M}), no reminder;"
                    f" registration {None if row is None else row['status']}",
                )

    async def refund(self, member: Member, kind: str) -> None:
        last = member.paid[-1]
        if last.refunded:
            return
        body = {} if kind == "full" else {"amount": "500.00"}
        answer = await self.control(
            "POST", f"/yookassa/payments/{last.provider_id}/refund", body, ok=False
        )
        if "id" not in answer:
            return
        last.refunded = kind
        member.log.append(f"{self.clock.now():%m-%d %H:%M} refund {kind} of {last.provider_id}")
        self.figures.refunds += 1
        if kind == "full":
            now = self.clock.now()
            # The shop learns of it by the webhook (botapi may be down a while): a day to act.
            member.refund_lag_until = now + DAY  # type: ignore[attr-defined]
            assert last.start is not None
            # A full refund ends the period it paid (not begun: back to the one before).
            member.end = None if last.start <= now else last.start
            if member.end is None:
                member.wants_in = False  # removed; pays again to come back
            member.autopay = False

    async def react(self) -> None:
        """Members read their messages: follow a receipt's link when they want in."""
        began = time.monotonic()
        try:
            await self._react()
        finally:
            self.figures.seconds["react"] += time.monotonic() - began

    async def _react(self) -> None:
        for member in self.members:
            if not member.registered or member.blocked:
                continue
            messages = await self.read(member)
            if member.story["surveys"]:
                await self.answer_survey(member, messages)
            if member.links and member.wants_in and not await self.in_chat(member):
                for link in member.links[-2:]:
                    await self.control(
                        "POST",
                        "/telegram/invite_links/join",
                        {"user_id": member.telegram_id, "invite_link": link},
                        ok=False,
                    )
                member.links.clear()

    async def answer_survey(self, member: Member, messages: list[dict[str, Any]]) -> None:
        """The monthly survey: open it from its button, answer each question (a button, or a
        text); an answer the bot moved on from (the next question, or thanks) is counted."""
        for message in messages:
            text = message.get("text") or ""
            if text.startswith("Спасибо! Анкета") or (
                text.startswith("Вопрос ") and not text.startswith("Вопрос 1 ")
            ):
                member.survey_acknowledged += 1
        for message in reversed(messages):
            text = message.get("text") or ""
            buttons = [
                button
                for row in (message.get("reply_markup") or {}).get("inline_keyboard") or []
                for button in row
                if str(button.get("callback_data") or "").startswith("survey:")
            ]
            if not (buttons or text.startswith("Вопрос ")):
                continue
            if buttons:
                await self.control(
                    "POST",
                    "/telegram/callback_queries",
                    {
                        "user_id": member.telegram_id,
                        "message_id": message["message_id"],
                        "data": self.rng.choice(buttons)["callback_data"],
                    },
                )
            else:
                await self.say(member, f"Ответ {self.rng.randrange(1, 20)} сделки")
            self.figures.actions["survey_answer"] += 1
            return

    async def check_surveys(self) -> None:
        """Every answer the bot moved on from is stored."""
        rows = await self.db.fetchall(
            "SELECT u.telegram_id, count(r.id) AS n FROM users u JOIN surveys s ON s.user_id = u.id"
            " JOIN survey_responses r ON r.survey_id = s.id GROUP BY u.telegram_id"
        )
        stored = {int(row["telegram_id"]): int(row["n"]) for row in rows}
        for member in self.members:
            if member.survey_acknowledged > stored.get(member.telegram_id, 0):
                self.find(
                    "nothing_lost",
                    member,
                    f"{member.survey_acknowledged} survey answers acknowledged,"
                    f" {stored.get(member.telegram_id, 0)} stored",
                )
                member.survey_acknowledged = stored.get(member.telegram_id, 0)

    async def in_chat(self, member: Member) -> bool:
        return self.chat_status().get(member.telegram_id) == "member"

    def chat_status(self) -> dict[int, str]:
        return self._members_cache

    async def refresh_chat(self) -> dict[int, str]:
        members = await self.control("GET", f"/telegram/chats/{CHAT_ID}/members")
        self._members_cache = {m["user_id"]: m["status"] for m in members}
        return self._members_cache

    async def observe_provider(self) -> None:
        """Auto-charges the provider made (the driver never asked for them): into the ledger."""
        await self.refresh_chat()
        payments = await self.control("GET", "/yookassa/payments")
        by_method = {
            getattr(m, "method_id", None): m for m in self.members if getattr(m, "method_id", None)
        }
        for payment in reversed(payments):
            pid = payment["id"]
            seen = self.known_payments.get(pid)
            self.known_payments[pid] = payment
            if seen is not None and seen["status"] == payment["status"]:
                continue
            method = (payment.get("payment_method") or {}).get("id")
            metadata = payment.get("metadata") or {}
            if "attempt" not in metadata or payment["status"] != "succeeded":
                continue
            member = by_method.get(method)
            if member is None:
                self.find("charged_once", None, f"charge {pid} of an unknown card {method}")
                continue
            now = self.clock.now()
            self.figures.charges += 1
            if not member.autopay:
                await self.read(member)  # an /autorenew_on answered since (charges at once)
            if not member.autopay and getattr(member, "charge_in_flight", False):
                member.charge_in_flight = False  # type: ignore[attr-defined]
            elif not member.autopay:
                self.find(
                    "charged_once",
                    member,
                    f"charged {pid} (period {metadata.get('period')}) with autopay off",
                )
            if member.end is not None and member.end - now > CHARGE_AHEAD + timedelta(hours=12):
                self.find(
                    "charged_once",
                    member,
                    f"charged {pid} for period {metadata.get('period')} while paid until"
                    f" {member.end:%Y-%m-%d %H:%M}",
                )
            if member.end is None or now >= member.end + GRACE + timedelta(hours=12):
                self.find("charged_once", member, f"charged {pid} after the grace ended")
            self.ledger_paid(member, pid, now, auto=True)
            member.log.append(f"{now:%m-%d %H:%M} charged {pid} {metadata}")

    # --- chaos --------------------------------------------------------------------------------

    async def chaos_step(self) -> None:
        r = self.rng
        roll = r.random()
        if roll < 0.04:
            # Flood control where it bites: the outbox's and the bot's sends, join approvals.
            method = r.choice(["sendMessage", "sendMessage", "approveChatJoinRequest"])
            await self.control(
                "POST",
                "/faults",
                {"api": "telegram", "mode": "429", "count": r.randrange(1, 6), "method": method},
            )
            self.figures.faults[f"telegram_429:{method}"] += 1
        elif roll < 0.06 and self.telegram_timeouts:
            await self.control(
                "POST",
                "/faults",
                {
                    "api": "telegram",
                    "mode": "timeout",
                    "count": 1,
                    "delay_s": 12,
                    "method": "sendMessage",
                },
            )
            self.figures.faults["telegram_timeout"] += 1
        elif roll < 0.09:
            await self.control(
                "POST", "/faults", {"api": "yookassa", "mode": "500", "count": r.randrange(1, 4)}
            )
            self.figures.faults["yookassa_500"] += 1
        elif roll < 0.095:
            await self.restart_bot()
        elif roll < 0.10 and self.bot_down_until is None and self.outages:
            # Down past Telegram's 24 h: the updates of the outage are lost, as on Telegram.
            await self._stop_bot()
            self.bot_down_until = self.day + 2
            self.figures.restarts["bot_outage_2_days"] += 1
        elif roll < 0.115:
            self.botapi.kill9()
            await self._start(self.botapi)
            self.figures.restarts["botapi_kill9"] += 1
        elif roll < 0.125:
            await asyncio.sleep(1.2)  # the state file is written within a second of a change
            self.sandbox.kill9()
            await self._start(self.sandbox)
            await self.sync_clock()
            # Message history is not kept across a sandbox restart: read from the start again.
            for member in self.members:
                member.seen_messages = 0
            self.figures.restarts["sandbox_kill9"] += 1
        elif roll < 0.16:
            await self.replay_webhook()
        elif roll < 0.19:
            await self.crash_mid_tick(
                r.choice(["payment_monitor", "recurrent_payments", "ban_monitor", "notifymonitor"])
            )

    async def crash_mid_tick(self, name: str) -> None:
        """A monitor dies in the middle of a tick (its transaction in flight is lost); the next
        tick, or the lease running out, has to finish the work."""
        task = asyncio.create_task(self.monitors[name].tick())
        await asyncio.sleep(self.rng.uniform(0.0, 0.05))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        self.dirty = True
        self.figures.restarts[f"crash:{name}"] += 1

    async def restart_bot(self) -> None:
        if self.bot_down_until is not None:
            return
        await self._stop_bot()
        await self._start_bot()
        self.figures.restarts["bot"] += 1

    async def replay_webhook(self) -> None:
        """A YooKassa notification again: now (duplicated) or one from days ago (late)."""
        deliveries = await self.control("GET", "/webhooks?api=yookassa")
        ok = [d for d in deliveries if d.get("ok")]
        if not ok:
            return
        delivery = self.rng.choice(ok)
        async with self.http.post(
            f"http://127.0.0.1:{self.botapi_port}/yookassa/webhook", json=delivery["payload"]
        ) as resp:
            await resp.read()
        self.figures.faults["webhook_replayed"] += 1

    # --- invariants ---------------------------------------------------------------------------

    async def end_of_day(self) -> None:
        now = self.clock.now()
        # Members who want in and are not: the way in a real member would ask for (/status).
        await self.settle()
        chat = await self.refresh_chat()
        for member in self.members:
            if (
                member.registered
                and not member.blocked
                and member.wants_in
                and member.entitled(now)
                and chat.get(member.telegram_id) != "member"
            ):
                await self.say(member, "/status")
        await self.settle()
        await self.react()
        await self.settle()
        await self.tick("ban_monitor")
        chat = await self.refresh_chat()
        bans = {
            b["user_id"] for b in await self.control("GET", f"/telegram/bans?chat_id={CHAT_ID}")
        }
        for member in self.members:
            if not member.registered:
                continue
            self.figures.member_days += 1
            status = chat.get(member.telegram_id)
            entitled = member.entitled(now)
            refund_lag = getattr(member, "refund_lag_until", None)
            if status == "member" and not entitled and not (refund_lag and now < refund_lag):
                self.find(
                    "access",
                    member,
                    f"in the chat, not entitled (paid until {member.end}; {self.history(member)})",
                )
            if entitled and member.telegram_id in bans:
                self.find("let_in", member, f"banned while entitled until {member.end}")
            if (
                entitled
                and member.wants_in
                and not member.blocked
                and status != "member"
                and self.bot_down_until is None  # nobody can approve them meanwhile
            ):
                self.find(
                    "let_in",
                    member,
                    f"entitled until {member.end} and wants in, status {status}"
                    f" ({self.history(member)})",
                )
        await self.check_outbox(now)
        await self.check_events(now)
        await self.check_surveys()
        self.figures.checks += 1

    def history(self, member: Member) -> str:
        return ", ".join(
            f"{'auto' if p.auto else 'paid'} {p.at:%m-%d %H:%M}"
            f" [{p.start:%m-%d}..{p.end:%m-%d}]" + (f" refund {p.refunded}" if p.refunded else "")
            for p in member.paid
        )

    async def check_outbox(self, now: datetime) -> None:
        rows = await self.db.fetchall(
            "SELECT id, chat_id, kind, status, last_error, created_at, dedupe_key FROM outbox"
        )
        for row in rows:
            member = self.by_tg.get(int(row["chat_id"]))
            if row["status"] == "dead" and not row["last_error"]:
                self.find("notified", member, f"outbox {row['id']} dead without a reason")
            # Undecided (neither sent nor dead) at two day ends in a row: a whole day of
            # notifymonitor ticks left it so. (created_at is the database's clock, not the
            # business one, so days are counted here.)
            if row["status"] in ("queued", "failed", "sending"):
                first = self.undecided.setdefault(row["id"], self.day)
                if self.day - first >= 2 and row["id"] not in self.reported:
                    self.reported.add(row["id"])
                    self.find(
                        "notified",
                        member,
                        f"outbox {row['id']} {row['kind']} still {row['status']} since day"
                        f" {first} ({row['last_error']})",
                    )
            else:
                self.undecided.pop(row["id"], None)
        # Every payment the provider took is applied and its member told (receipt row).
        applied = await self.db.fetchall(
            "SELECT p.provider_payment_id, p.status, p.processed_at, u.telegram_id"
            " FROM payments p JOIN users u ON u.id = p.user_id"
            " WHERE p.provider_payment_id IS NOT NULL"
        )
        ours = {row["provider_payment_id"]: row for row in applied}
        for member in self.members:
            for paid in member.paid:
                row = ours.get(paid.provider_id)
                if (row is None or row["status"] != "succeeded") and now - paid.at > timedelta(
                    hours=12
                ):
                    self.find(
                        "paid_let_in",
                        member,
                        f"payment {paid.provider_id} of {paid.at:%m-%d %H:%M} not applied"
                        f" ({None if row is None else row['status']})",
                    )

    # --- report -------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        grouped = Counter(f.invariant for f in self.findings)
        return {
            "backend": self.backend,
            "members": len(self.members),
            "days": self.days,
            "seed": self.seed,
            "member_days": self.figures.member_days,
            "payments": self.figures.payments,
            "charges": self.figures.charges,
            "refunds": self.figures.refunds,
            "restarts": dict(self.figures.restarts),
            "faults": dict(self.figures.faults),
            "actions": dict(self.figures.actions),
            "findings": dict(grouped),
            "seconds_in": {k: round(v, 1) for k, v in self.figures.seconds.most_common()},
        }


async def run_soak(**kwargs: Any) -> Soak:
    soak = Soak(**kwargs)
    await soak.run()
    return soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--members", type=int, default=60)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-chaos", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    from runtime.logging import configure_logging

    configure_logging("warning", program="soak", log_format="json")

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    pg_url = None
    dbname = None
    if args.backend == "postgres":
        import psycopg

        dbname = f"soak_{os.getpid()}_{args.seed}"
        with psycopg.connect(args.pg_server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        pg_url = args.pg_server.rsplit("/", 1)[0] + "/" + dbname
    started = time.monotonic()
    try:
        soak = asyncio.run(
            run_soak(
                backend=args.backend,
                members=args.members,
                days=args.days,
                seed=args.seed,
                workdir=workdir,
                pg_url=pg_url,
                chaos=not args.no_chaos,
                verbose=args.verbose,
            )
        )
    finally:
        if dbname is not None:
            import psycopg

            with psycopg.connect(args.pg_server, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    report = soak.report()
    report["seconds"] = round(time.monotonic() - started, 1)
    for finding in soak.findings:
        print(finding.line())
    print(json.dumps(report, ensure_ascii=False))
    return 1 if soak.findings else 0


if __name__ == "__main__":
    sys.exit(main())
