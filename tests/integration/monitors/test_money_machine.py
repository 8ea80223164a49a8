"""The money paths as a state machine (hypothesis), against the sandbox, on both backends.

Three members with saved cards are due; two more have never paid. Two recurrent_payments
replicas, payment_monitor and tsmonitor tick in any order (the replicas also at the same moment),
while members check out by hand through the API's payment service (a first payment, or a renewal
paid by hand beside the auto-renewal), pay, cancel or walk away at YooKassa's page, and YooKassa's
notifications reach botapi's webhook (the Flask app, in-process) early, late, twice or never,
interleaved with payment_monitor's polling. Meanwhile the provider fails (500s, 429s, and answers
that come after the client gave up: done, but nobody heard), cards are revoked or declined, the
shop refunds payments (whole or in part), both clocks jump (past the provider's key window too),
and a monitor dies at one of its pause points (`monitors.pause`) and is restarted. After every
step:

- no subscription period is charged twice at the provider, and a renewal paid by hand and an
  auto-renewal are never open for one subscription at once (payments.renewals);
- every payment we applied extended its subscription exactly once, whichever path (webhook,
  polling, the repeated create) saw it first, and we applied nothing the provider did not take;
- nobody keeps a live subscription past its grace, nor a period whose payment was refunded whole.

`settle` (faults cleared, then payment_monitor and the replicas tick ACCESS_TICKS times as an hour
passes) must then bring our ledger and the provider's into agreement (each successful payment
applied, no attempt left open) and give every paying member access: a live subscription through
the period paid for and a receipt with the invite to the paid chat in the outbox.

A monitor "dies" in-process: its tick runs with DOMOS_TEST_PAUSE_AT naming the point and, once
there, the coroutine is abandoned (never resumed, never cancelled) and a new instance with a new
owner takes its place, as a restarted process would. For the database that is a SIGKILL at that
line (tests/integration/monitors/test_recurrent_crash.py does it with real processes, too slowly
for a machine that dies dozens of times): every pause point sits between a provider call and the
next statement, outside any transaction and holding no pooled connection, so nothing is left
open to roll back; what was committed stays, and the dead owner's leases stay held until they
run out on the machine's clock, exactly as after a kill; none of the code after the point
(writes, lease releases) ever runs.

Examples are derandomized so CI sees the same sequences; a failure prints its steps, which
become a plain test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from monitors.payment_monitor import PaymentMonitor
from monitors.recurrent_payments import RecurrentPayments
from monitors.tsmonitor import TermsMonitor
from payments.client import YooKassaClient
from runtime.config import Settings
from runtime.db import async_database, sync_database
from runtime.errors import MonitorError, TransientError
from services.api.errors import ApiError
from services.api.models import PaymentCreate
from services.api.payments import PaymentService, stored_key
from services.botapi.app import create_app
from services.botapi.settings import BotApiSettings
from services.sandbox import DEFAULT_BOT_TOKEN, SandboxConfig, build_app
from tests.conftest import DB_BACKENDS, database_environ
from tests.integration.monitors.conftest import (
    FixedClock,
    Monitors,
    Sandbox,
    empty_domain_tables,
    utcnow,
)
from tests.integration.monitors.factories import managed_chat, provider_event
from tests.integration.monitors.test_recurrent_payments import due_subscription

#: Members with a saved card and a subscription due; members who have never paid.
MEMBERS = 3
BUYERS = 2
PEOPLE = MEMBERS + BUYERS
PERIOD = timedelta(days=30)
GRACE = timedelta(days=3)
#: The client gives up before the sandbox's late answer comes: the charge happened unheard.
CLIENT_TIMEOUT_S = 0.15
LATE_ANSWER_S = 0.4
#: payment_monitor's ticks (11 minutes apart, faults cleared) within which a payment the
#: provider took is applied and its receipt queued, whether or not its webhook ever came.
ACCESS_TICKS = 6
#: Where each monitor may die (monitors.pause.pause_point).
DEATHS = {
    "recurrent_payments": ("charge_committed", "charge_answered"),
    "payment_monitor": ("checkout_resent", "payment_fetched", "event_fetched"),
}
#: The derandomized run CI sees: examples and steps in each.
EXAMPLES = 80
STEPS = 15
#: A client repeats a failed create (same Idempotence-Key) within this long, or not at all.
CLIENT_RETRIES_WITHIN = timedelta(hours=1)

pytestmark = pytest.mark.timeout(600)

_orders = itertools.count(1)


class MoneyMachine(RuleBasedStateMachine):
    environ: dict[str, str]

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.run(self._open())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _open(self) -> None:
        self.server = TestServer(build_app(SandboxConfig()), host="127.0.0.1")
        await self.server.start_server()
        self.http = aiohttp.ClientSession()
        self.sandbox = Sandbox(base=str(self.server.make_url("")).rstrip("/"), http=self.http)
        environ = {
            **self.environ,
            "TELEGRAM_API_URL": self.sandbox.base,
            "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
            "YOOKASSA_API_URL": self.sandbox.base,
            "YOOKASSA_SHOP_ID": "100500",
            "YOOKASSA_SECRET_KEY": "test_sandbox_secret_key",
        }
        settings_ = Settings.from_env(environ)
        self.db = async_database(settings_.db)
        await self.db.open()
        # A minute ahead of the wall clock, which stamps what botapi records (the database's
        # CURRENT_TIMESTAMP): what it records is due at once, as in production, where all share
        # one clock; the machine's clock then moves only when the machine says so.
        self.clock = FixedClock(utcnow() + timedelta(minutes=1))
        self.holder = Monitors(environ, self.db)
        self.replicas = [await self._start(RecurrentPayments) for _ in range(2)]
        self.payment_monitor = await self._start(PaymentMonitor)
        self.terms = await self._start(TermsMonitor)
        #: Ticks abandoned at a pause point: the monitors that died there.
        self.dead: list[asyncio.Task[None]] = []
        self.pause_file = Path(self.environ["DOMOS_DATA_DIR"]).parent / "paused"
        # Due now, in a day, in two: a renewal by hand can meet the card's charge later, too.
        self.subs = [
            await due_subscription(self.db, self.sandbox, ends_in=timedelta(hours=2, days=i))
            for i in range(MEMBERS)
        ]
        members = []
        for sub in self.subs:
            user_id = await self.db.fetchval(
                "SELECT user_id FROM subscriptions WHERE id = ?", (sub["id"],)
            )
            members.append({"id": user_id, "telegram_id": sub["telegram_id"]})
        buyers = []
        for _ in range(BUYERS):
            telegram_id = await self.sandbox.new_user()
            user_id = await self.db.fetchval(
                "INSERT INTO users (telegram_id, first_name) VALUES (?, 'Вера') RETURNING id",
                (telegram_id,),
            )
            buyers.append({"id": user_id, "telegram_id": telegram_id})
        #: Who checks out: a buyer, a member, a buyer, then the other members (hypothesis
        #: leans to small indices).
        self.people: list[dict[str, Any]] = [buyers[0], members[0], buyers[1], *members[1:]]
        self.chat = await managed_chat(self.db, self.sandbox)
        # The API's payment service, its provider calls as impatient as the replicas'.
        self.api_yookassa = YooKassaClient(settings_, timeout_s=CLIENT_TIMEOUT_S)
        await self.api_yookassa.open()
        self.api = PaymentService(self.db, self.api_yookassa, "https://t.me/domos_bot")
        #: Each person's latest order: client key, when, the API's last error code.
        self.orders: dict[int, dict[str, Any]] = {}
        # botapi, in-process: the Flask app with its own sync pool and provider client, called
        # from one worker thread while this loop serves the sandbox it asks.
        self.botapi_thread = ThreadPoolExecutor(max_workers=1)
        self.sync_db = sync_database(settings_, name="botapi")
        self.sync_db.open()
        self.botapi = create_app(settings_, BotApiSettings.from_env(environ), db=self.sync_db)
        self.webhook = self.botapi.test_client()
        #: Provider ids of payments refunded whole.
        self.refunded: set[str] = set()
        #: Renewals paid by hand: our payment row -> (subscription, the period end it renews).
        self.paid_by_hand: dict[int, tuple[int, datetime]] = {}
        #: Notifications YooKassa owes us (it retries each until answered 2xx).
        self.mailbox: list[dict[str, Any]] = []

    async def _start(self, cls: type[Any]) -> Any:
        monitor = await self.holder.start(cls, self.clock)
        if isinstance(monitor, RecurrentPayments | PaymentMonitor):
            monitor.yookassa = await _impatient(monitor.yookassa, monitor.ctx.settings)
        if isinstance(monitor, PaymentMonitor):
            monitor.work = dataclasses.replace(monitor.work, yookassa=monitor.yookassa)
        return monitor

    def teardown(self) -> None:
        async def close() -> None:
            for task in self.dead:
                task.cancel()
            await asyncio.gather(*self.dead, return_exceptions=True)
            for monitor in self.holder.started:
                await monitor.teardown()
            await self.api_yookassa.close()
            await self.db.close()
            await self.http.close()
            await self.server.close()

        self.run(close())
        self.loop.close()
        self.botapi.extensions["domos"]["yookassa"].close()
        self.sync_db.close()
        self.botapi_thread.shutdown()

    # --- the monitors ------------------------------------------------------------------------

    async def _tick(self, monitor: Any) -> None:
        # The runner logs a failed tick and ticks again after a backoff: so does the machine.
        # Any other exception is a failure of the machine.
        with contextlib.suppress(MonitorError, TransientError):
            await monitor.tick()

    @rule(
        replica=st.sampled_from([0, 1]),
        dies_at=st.sampled_from([None, None, *DEATHS["recurrent_payments"]]),
    )
    def tick_a_replica(self, replica: int, dies_at: str | None) -> None:
        """A replica ticks; or dies at `dies_at` if the tick gets there, and is restarted."""
        self.run(self._replica_ticks(replica, dies_at))

    async def _replica_ticks(self, replica: int, dies_at: str | None) -> bool:
        if dies_at is None:
            await self._tick(self.replicas[replica])
            return False
        if not await self._dies_at(self.replicas[replica], dies_at):
            return False
        self.replicas[replica] = await self._start(RecurrentPayments)
        return True

    @rule()
    def tick_both_replicas_at_once(self) -> None:
        async def both() -> None:
            await asyncio.gather(*(self._tick(r) for r in self.replicas))

        self.run(both())

    @rule(dies_at=st.sampled_from([None, None, *DEATHS["payment_monitor"]]))
    def tick_payment_monitor(self, dies_at: str | None) -> None:
        """payment_monitor ticks; or dies at `dies_at` if the tick gets there, and is
        restarted."""
        self.run(self._payment_monitor_ticks(dies_at))

    async def _payment_monitor_ticks(self, dies_at: str | None) -> bool:
        if dies_at is None:
            await self._tick(self.payment_monitor)
            return False
        if not await self._dies_at(self.payment_monitor, dies_at):
            return False
        self.payment_monitor = await self._start(PaymentMonitor)
        return True

    @rule()
    def tick_terms(self) -> None:
        self.run(self._tick(self.terms))
        self.run(self._nobody_past_grace_is_live())

    async def _dies_at(self, monitor: Any, point: str) -> bool:
        """Tick `monitor` until it reaches `point`; True when it did and was left there dead
        (see the module's docstring), False when the tick ended without passing it."""
        self.pause_file.unlink(missing_ok=True)
        os.environ["DOMOS_TEST_PAUSE_AT"] = point
        os.environ["DOMOS_TEST_PAUSE_FILE"] = str(self.pause_file)
        task = asyncio.ensure_future(self._tick(monitor))
        try:
            # The hook announces its arrival in a file (it is made for other processes).
            while not task.done() and not self.pause_file.exists():  # noqa: ASYNC110
                await asyncio.sleep(0.002)
        finally:
            del os.environ["DOMOS_TEST_PAUSE_AT"], os.environ["DOMOS_TEST_PAUSE_FILE"]
        if task.done():
            task.result()
            return False
        self.dead.append(task)
        return True

    # --- the provider and the world ----------------------------------------------------------

    @rule(mode=st.sampled_from(["500", "429", "timeout"]), count=st.integers(1, 3))
    def provider_fails(self, mode: str, count: int) -> None:
        body = {"api": "yookassa", "mode": mode, "count": count, "delay_s": LATE_ANSWER_S}
        self.run(self.sandbox.control("POST", "/faults", body))

    @rule(minutes=st.sampled_from([1, 11, 60, 6 * 60, 24 * 60, 4 * 24 * 60]))
    def time_passes(self, minutes: int) -> None:
        self.run(self._time_passes(minutes))

    async def _time_passes(self, minutes: int) -> None:
        self.clock.at += timedelta(minutes=minutes)
        # The provider's clock too: its idempotence keys and checkout pages expire on it.
        await self.sandbox.control("POST", "/clock", {"advance_s": minutes * 60})

    @rule(member=st.integers(0, MEMBERS - 1))
    def member_revokes_the_card(self, member: int) -> None:
        method = self.subs[member]["method"]
        self.run(self.sandbox.control("POST", f"/yookassa/payment_methods/{method}/revoke"))

    @rule(
        member=st.integers(0, MEMBERS - 1),
        reason=st.sampled_from(["insufficient_funds", "card_expired", "general_decline"]),
    )
    def the_bank_declines_next(self, member: int, reason: str) -> None:
        method = self.subs[member]["method"]
        path = f"/yookassa/payment_methods/{method}/declines"
        self.run(self.sandbox.control("POST", path, {"reason": reason}))

    @rule(person=st.integers(0, PEOPLE - 1), full=st.booleans())
    def the_shop_refunds_a_payment(self, person: int, full: bool) -> None:
        """From YooKassa's dashboard: the person's latest payment, whole or half of it; the
        notification that botapi records for it follows."""
        payments = self.run(self._provider_payments())[self.people[person]["id"]]
        refundable = [
            p for p in payments if p["status"] == "succeeded" and not p.get("refunded_amount")
        ]
        if not refundable:
            return
        payment = refundable[-1]
        body = {} if full else {"amount": f"{Decimal(payment['amount']['value']) / 2:.2f}"}
        path = f"/yookassa/payments/{payment['id']}/refund"
        made = self.run(self.sandbox.control("POST", path, body))
        self.run(provider_event(self.db, made, "refund.succeeded"))
        if full:
            self.refunded.add(payment["id"])

    # --- checkout: the member pays by hand ---------------------------------------------------

    async def _create(self, person: int, order: dict[str, Any]) -> None:
        """POST /payments as the API serves it, with the order's Idempotence-Key."""
        who = self.people[person]
        request = PaymentCreate(
            telegram_id=who["telegram_id"], tariff_code="month", save_payment_method=order["save"]
        )
        order["error"] = None
        try:
            await self.api.create(request, order["key"])
        except ApiError as exc:
            order["error"] = exc.code
        assert order["error"] in (None, "provider_unavailable", "renewal_in_progress"), order
        if order.get("row") is None:
            key = stored_key(who["telegram_id"], order["key"])
            order["row"] = await self.db.fetchval(
                "SELECT id FROM payments WHERE idempotence_key = ?", (key,)
            )
            if order["row"] is not None:
                # The API stamps rows with the database's clock; here the whole world runs on
                # the machine's (and the sandbox's, which moves with it).
                await self.db.execute(
                    "UPDATE payments SET created_at = ?, updated_at = ? WHERE id = ?",
                    (self.clock.at, self.clock.at, order["row"]),
                )
                renews = await self.db.fetchone(
                    "SELECT s.id, s.current_period_end FROM payments p JOIN subscriptions s"
                    " ON s.id = p.subscription_id WHERE p.id = ? AND p.kind = 'renewal'",
                    (order["row"],),
                )
                if renews is not None:
                    # The period this renewal by hand is for: the one after today's end.
                    self.paid_by_hand[order["row"]] = (renews["id"], renews["current_period_end"])

    async def _order_open(self, order: dict[str, Any] | None) -> bool:
        if order is None or order["row"] is None:
            return False
        processed = await self.db.fetchval(
            "SELECT processed_at FROM payments WHERE id = ?", (order["row"],)
        )
        return processed is None

    @rule(
        person=st.integers(0, PEOPLE - 1),
        save=st.booleans(),
        then=st.sampled_from(["pays", "pays", "fails 3-D Secure", "leaves"]),
    )
    def member_checks_out(self, person: int, save: bool, then: str) -> None:
        """A new order, once the last one is settled: a first payment, or a renewal paid by
        hand while the subscription is live (refused while its card is being charged). The
        payer then pays at YooKassa's page, fails there, or leaves it open (to pay later or
        let it expire)."""
        if self.run(self._order_open(self.orders.get(person))):
            return
        order = {"key": f"order-{next(_orders)}", "at": self.clock.at, "save": save, "row": None}
        self.orders[person] = order
        self.run(self._create(person, order))
        for payment in self.run(self._checkouts()):
            if payment["metadata"]["payment_row"] == str(order["row"]):
                self.run(self._at_the_page(payment, then))

    @rule(person=st.integers(0, PEOPLE - 1))
    def client_repeats_the_create(self, person: int) -> None:
        """After a 502 the client repeats the request with the same key, soon."""
        order = self.orders.get(person)
        if order is None or order["error"] != "provider_unavailable":
            return
        if self.clock.at - order["at"] > CLIENT_RETRIES_WITHIN:
            return
        self.run(self._create(person, order))

    async def _checkouts(self) -> list[dict[str, Any]]:
        """The provider's checkout payments (their metadata names our row), newest first."""
        payments = await self.sandbox.control("GET", "/yookassa/payments")
        return [p for p in payments if "payment_row" in (p.get("metadata") or {})]

    async def _at_the_page(self, payment: dict[str, Any], then: str) -> None:
        if payment["status"] != "pending" or then == "leaves":
            return
        if then == "pays":
            path, body = f"/yookassa/payments/{payment['id']}/succeed", {}
        else:
            path = f"/yookassa/payments/{payment['id']}/cancel"
            body = {"reason": "3d_secure_failed"}
        paid = await self.sandbox.control("POST", path, body)
        self.mailbox.append(
            {"type": "notification", "event": f"payment.{paid['status']}", "object": paid}
        )

    @rule(pick=st.integers(0, 3), pays=st.booleans())
    def payer_comes_back_to_the_page(self, pick: int, pays: bool) -> None:
        """A payer who left a checkout page open pays it, or fails there, later."""
        waiting = [p for p in self.run(self._checkouts()) if p["status"] == "pending"]
        if waiting:
            payment = waiting[pick % len(waiting)]
            self.run(self._at_the_page(payment, "pays" if pays else "fails 3-D Secure"))

    async def _notify(self, body: dict[str, Any]) -> Any:
        return await self.loop.run_in_executor(
            self.botapi_thread, lambda: self.webhook.post("/yookassa/webhook", json=body)
        )

    @rule(
        about=st.sampled_from(["checkout", "checkout", "charge"]),
        pick=st.integers(0, 3),
        event=st.sampled_from(["as it is", "as it is", "payment.succeeded", "payment.canceled"]),
    )
    def yookassa_notifies(self, about: str, pick: int, event: str) -> None:
        """A notification about a recent payment (a checkout or a charge) reaches botapi: in
        time, late, again, or early (a status not reached yet, or never). botapi asks the
        provider; only what it confirms is recorded."""
        payments = self.run(self.sandbox.control("GET", "/yookassa/payments"))
        checkout = about == "checkout"
        payments = [p for p in payments if ("payment_row" in p["metadata"]) is checkout]
        if not payments:
            return
        payment = payments[pick % len(payments)]
        if event == "as it is":
            event = f"payment.{payment['status']}"
            if payment["status"] == "pending":
                return  # YooKassa says nothing of a payment still pending
        answer = self.run(self._notify({"type": "notification", "event": event, "object": payment}))
        # 409: not (yet) confirmed; 503: the provider could not be asked (its faults): YooKassa
        # retries both, as it retries a notification it never got an answer to.
        assert answer.status_code in (200, 409, 503), (answer.status_code, answer.json)

    @rule(pick=st.integers(0, 3), again=st.booleans())
    def yookassa_delivers(self, pick: int, again: bool) -> None:
        """One notification YooKassa owes us reaches botapi, in any order; answered 2xx it is
        done unless delivered `again` later (YooKassa did not hear the answer)."""
        if not self.mailbox:
            return
        body = self.mailbox[pick % len(self.mailbox)]
        answer = self.run(self._notify(body))
        assert answer.status_code in (200, 503), (answer.status_code, answer.json)
        if answer.status_code == 200 and not again:
            self.mailbox.remove(body)

    @rule(
        dies_at=st.sampled_from([None, *DEATHS["payment_monitor"], *DEATHS["recurrent_payments"]])
    )
    def settle(self, dies_at: str | None) -> None:
        """Faults cleared, then an hour passes in ACCESS_TICKS steps with every monitor ticking
        (one of them dying at `dies_at` on the way, if it gets there, and restarted): whatever
        the provider did must now be known to us, and every payer let in."""
        self.run(self.sandbox.control("POST", "/faults", {"api": "yookassa", "count": 0}))
        for _ in range(ACCESS_TICKS):
            self.run(self._time_passes(11))
            for replica in (0, 1):
                armed = dies_at if dies_at in DEATHS["recurrent_payments"] else None
                if self.run(self._replica_ticks(replica, armed)):
                    dies_at = None
            armed = dies_at if dies_at in DEATHS["payment_monitor"] else None
            if self.run(self._payment_monitor_ticks(armed)):
                dies_at = None
        self.run(self._ledgers_agree())
        self.run(self._tick(self.terms))
        self.run(self._nobody_past_grace_is_live())
        self.run(self._no_refunded_period_is_live())
        self.run(self._payers_have_access())
        # YooKassa's retries get through at last: late, after polling applied the payments.
        while self.mailbox:
            answer = self.run(self._notify(self.mailbox.pop()))
            assert answer.status_code == 200, (answer.status_code, answer.json)
        self.run(self._tick(self.payment_monitor))
        self.run(self._ledgers_agree())

    # --- what must hold ----------------------------------------------------------------------

    async def _provider_charges(self) -> dict[int, list[dict[str, Any]]]:
        """The provider's saved-card charges, by subscription."""
        payments = await self.sandbox.control("GET", "/yookassa/payments")
        by_sub: dict[int, list[dict[str, Any]]] = {}
        for payment in payments:
            sub_id = (payment.get("metadata") or {}).get("subscription_id")
            if sub_id is not None:
                by_sub.setdefault(int(sub_id), []).append(payment)
        return by_sub

    async def _provider_payments(self) -> dict[int, list[dict[str, Any]]]:
        """Every payment at the provider (charges and checkouts), by member, oldest first."""
        payments = await self.sandbox.control("GET", "/yookassa/payments")
        by_telegram = {who["telegram_id"]: who["id"] for who in self.people}
        rows = await self.db.fetchall("SELECT id, user_id FROM subscriptions")
        by_sub = {row["id"]: row["user_id"] for row in rows}
        by_user: dict[int, list[dict[str, Any]]] = {who["id"]: [] for who in self.people}
        for payment in reversed(payments):
            metadata = payment.get("metadata") or {}
            if "subscription_id" in metadata:
                user_id = by_sub.get(int(metadata["subscription_id"]))
            else:
                user_id = by_telegram.get(int(metadata.get("telegram_id", 0)))
            assert user_id is not None, payment
            by_user[user_id].append(payment)
        return by_user

    async def _applied(self, user_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT id, provider_payment_id, subscription_id, applied_period_end, processed_at,"
            " confirmed_at, NOT EXISTS (SELECT 1 FROM charge_attempts ca"
            " WHERE ca.payment_id = payments.id) AS checkout FROM payments"
            " WHERE user_id = ? AND status = 'succeeded' AND processed_at IS NOT NULL",
            (user_id,),
        )
        return [dict(row) for row in rows]

    async def _ledgers_agree(self) -> None:
        payments = await self._provider_payments()
        for who in self.people:
            succeeded = {p["id"] for p in payments[who["id"]] if p["status"] == "succeeded"}
            applied = {row["provider_payment_id"] for row in await self._applied(who["id"])}
            assert applied == succeeded, (who["id"], applied, succeeded)
        still_open = await self.db.fetchall(
            "SELECT subscription_id FROM charge_attempts WHERE status IN ('created', 'pending')"
        )
        assert not still_open, f"attempts still open: {[dict(row) for row in still_open]}"

    @invariant()
    def each_period_is_charged_at_most_once(self) -> None:
        charges = self.run(self._provider_charges())
        for sub_id, payments in charges.items():
            periods = Counter(
                p["metadata"]["period"] for p in payments if p["status"] == "succeeded"
            )
            assert all(n == 1 for n in periods.values()), (sub_id, periods)

    @invariant()
    def no_period_is_paid_by_hand_and_charged(self) -> None:
        """A renewal paid by hand and the card's charge never both pay the period after one
        end: the charge waits for the open renewal, the renewal is refused while a charge runs
        (payments.renewals)."""
        if not self.paid_by_hand:
            return
        payments = self.run(self.sandbox.control("GET", "/yookassa/payments"))
        taken = [p for p in payments if p["status"] == "succeeded"]
        charged = {
            (int(p["metadata"]["subscription_id"]), p["metadata"]["period"])
            for p in taken
            if "subscription_id" in p["metadata"]
        }
        for payment in taken:
            row = int(payment["metadata"].get("payment_row", 0))
            if row in self.paid_by_hand:
                sub_id, end = self.paid_by_hand[row]
                period = end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                assert (sub_id, period) not in charged, (row, sub_id, period)

    @invariant()
    def never_paid_by_hand_and_charged_at_once(self) -> None:
        """payments.renewals: a manual renewal and an auto-charge are never open together."""
        both = self.run(
            self.db.fetchall(
                "SELECT p.subscription_id FROM payments p WHERE p.kind = 'renewal'"
                " AND p.processed_at IS NULL"
                " AND p.status IN ('created', 'pending', 'waiting_for_capture')"
                " AND NOT EXISTS (SELECT 1 FROM charge_attempts ca WHERE ca.payment_id = p.id)"
                " AND EXISTS (SELECT 1 FROM charge_attempts ca"
                " WHERE ca.subscription_id = p.subscription_id"
                " AND ca.status IN ('created', 'pending'))"
            )
        )
        assert not both, [row["subscription_id"] for row in both]

    @invariant()
    def each_applied_payment_extended_once(self) -> None:
        """Every subscription reaches exactly as far as the payments applied to it paid for:
        a seeded one from its seeded end, one a checkout opened from that payment's apply."""
        payments = self.run(self._provider_payments())
        seeded = {sub["id"]: sub["end"] for sub in self.subs}
        for who in self.people:
            applied = self.run(self._applied(who["id"]))
            succeeded = {p["id"] for p in payments[who["id"]] if p["status"] == "succeeded"}
            assert {a["provider_payment_id"] for a in applied} <= succeeded, who["id"]
            rows = self.run(
                self.db.fetchall(
                    "SELECT id, current_period_end FROM subscriptions WHERE user_id = ?",
                    (who["id"],),
                )
            )
            for row in rows:
                onto = [a for a in applied if a["subscription_id"] == row["id"]]
                if row["id"] in seeded:
                    start = seeded[row["id"]]
                else:
                    assert onto, f"subscription {row['id']} was opened by no payment"
                    start = min(a["processed_at"] for a in onto)
                withdrawn = self.run(self._withdrawn(row["id"], row["current_period_end"]))
                periods = len(onto) - len(withdrawn)
                assert row["current_period_end"] == start + PERIOD * periods, (
                    row["id"],
                    row["current_period_end"],
                    start,
                    len(onto),
                    len(withdrawn),
                )

    async def _withdrawn(self, sub_id: int, current_end: Any) -> list[dict[str, Any]]:
        """Periods a full refund took back before they began (the subscription returned to
        the period before): each was the last one, and had not begun when it was taken."""
        rows = await self.db.fetchall(
            "SELECT p.applied_period_end, r.created_at FROM refunds r"
            " JOIN payments p ON p.id = r.payment_id"
            " WHERE r.subscription_id = ? AND r.effect = 'access_ended'"
            " AND p.applied_period_end > ?",
            (sub_id, current_end),
        )
        for row in rows:
            assert row["applied_period_end"] - PERIOD == current_end, (sub_id, row)
            assert row["created_at"] < current_end, f"{sub_id}: a begun period was taken back"
        return [dict(row) for row in rows]

    async def _no_refunded_period_is_live(self) -> None:
        """A full refund of the payment that paid the live period ends it, as an expiry does."""
        rows = await self.db.fetchall(
            "SELECT s.id, s.status, p.provider_payment_id FROM subscriptions s"
            " LEFT JOIN payments p ON p.subscription_id = s.id"
            " AND p.applied_period_end = s.current_period_end"
        )
        for row in rows:
            if row["provider_payment_id"] in self.refunded:
                assert row["status"] not in ("active", "grace"), dict(row)

    async def _nobody_past_grace_is_live(self) -> None:
        """Checked right after tsmonitor ticked: it ends what is past grace."""
        live = await self.db.fetchall(
            "SELECT id, current_period_end FROM subscriptions WHERE status IN ('active', 'grace')"
        )
        for row in live:
            assert row["current_period_end"] + GRACE > self.clock.at, row["id"]

    async def _payers_have_access(self) -> None:
        """After settle: each checkout the provider took is confirmed, its receipt (with the
        paid chat's invite) queued; a member whose latest payment still covers today (or its
        grace) and was not refunded whole holds a live subscription through its period."""
        for who in self.people:
            applied = await self._applied(who["id"])
            for payment in applied:
                if not payment["checkout"]:
                    continue
                assert payment["confirmed_at"] is not None, payment
                receipt = await self.db.fetchval(
                    "SELECT text FROM outbox WHERE dedupe_key = ? AND kind = 'receipt'",
                    (f"payment_confirmed:{payment['id']}",),
                )
                assert receipt is not None, payment
            if not applied:
                continue
            latest = max(applied, key=lambda a: a["applied_period_end"])
            if latest["provider_payment_id"] in self.refunded:
                continue
            if latest["applied_period_end"] + GRACE <= self.clock.at:
                continue
            live = await self.db.fetchval(
                "SELECT current_period_end FROM subscriptions WHERE user_id = ?"
                " AND status IN ('active', 'grace')",
                (who["id"],),
            )
            assert live == latest["applied_period_end"], (who["id"], live, latest)


async def _impatient(client: YooKassaClient, settings_: Settings) -> YooKassaClient:
    """The monitor's provider client, swapped for one that gives up before a late answer."""
    await client.close()
    impatient = YooKassaClient(settings_, timeout_s=CLIENT_TIMEOUT_S)
    await impatient.open()
    return impatient


@pytest.fixture(params=DB_BACKENDS)
def fresh_environ(request: pytest.FixtureRequest) -> Any:
    """A factory: every example starts from empty, migrated databases."""
    made: list[Path] = []

    def make() -> dict[str, str]:
        if request.param == "postgres":
            url: str = request.getfixturevalue("migrated_pg_url")
            empty_domain_tables(url)
            work = Path(tempfile.mkdtemp(prefix="money-machine-"))
            made.append(work)
            return database_environ("postgres", str(work / "data"), url)
        work = Path(tempfile.mkdtemp(prefix="money-machine-"))
        made.append(work)
        shutil.copytree(request.getfixturevalue("migrated_sqlite_dir"), work / "data")
        return database_environ("sqlite", str(work / "data"))

    yield make
    for work in made:
        shutil.rmtree(work, ignore_errors=True)


def test_the_money_paths_hold_whatever_happens(fresh_environ: Any) -> None:
    class Machine(MoneyMachine):
        def __init__(self) -> None:
            self.environ = fresh_environ()
            super().__init__()

    # CI runs the same EXAMPLES sequences every time; MONEY_MACHINE_EXAMPLES=N runs N new ones
    # (a hunt: `MONEY_MACHINE_EXAMPLES=500 pytest ...test_money_machine.py`).
    hunt = os.environ.get("MONEY_MACHINE_EXAMPLES")
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=int(hunt) if hunt else EXAMPLES,
            stateful_step_count=int(os.environ.get("MONEY_MACHINE_STEPS", STEPS)),
            deadline=None,
            derandomize=not hunt,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# --- the machine's sequences spelled out: each race and each death, on every run ------------

Step = tuple[str, dict[str, Any]]
PAYS: Step = ("member_checks_out", {"person": 0, "save": True, "then": "pays"})
SETTLE: Step = ("settle", {"dies_at": None})


def _tick_pm(dies_at: str | None = None) -> Step:
    return ("tick_payment_monitor", {"dies_at": dies_at})


SEQUENCES: dict[str, list[Step]] = {
    "polled first, its webhook late and twice": [
        PAYS,
        ("time_passes", {"minutes": 11}),
        _tick_pm(),
        ("yookassa_delivers", {"pick": 0, "again": True}),
        _tick_pm(),
        SETTLE,
    ],
    "webhook first, polling after": [
        PAYS,
        ("yookassa_delivers", {"pick": 0, "again": True}),
        _tick_pm(),
        ("time_passes", {"minutes": 11}),
        _tick_pm(),
        SETTLE,
    ],
    "dies with the event fetched": [
        PAYS,
        ("yookassa_delivers", {"pick": 0, "again": False}),
        _tick_pm("event_fetched"),
        SETTLE,
    ],
    "dies with the payment polled": [
        PAYS,
        ("time_passes", {"minutes": 11}),
        _tick_pm("payment_fetched"),
        SETTLE,
    ],
    "the create's answer lost, dies with the repeat answered": [
        ("provider_fails", {"mode": "timeout", "count": 1}),
        PAYS,
        ("time_passes", {"minutes": 11}),
        _tick_pm("checkout_resent"),
        SETTLE,
    ],
    "paid by hand while the card is due": [
        ("member_checks_out", {"person": 1, "save": False, "then": "leaves"}),
        ("tick_both_replicas_at_once", {}),
        ("payer_comes_back_to_the_page", {"pick": 0, "pays": True}),
        ("tick_a_replica", {"replica": 0, "dies_at": None}),
        SETTLE,
    ],
    "the card charged unheard, paying by hand refused": [
        ("provider_fails", {"mode": "timeout", "count": 1}),
        ("tick_a_replica", {"replica": 0, "dies_at": None}),
        ("member_checks_out", {"person": 1, "save": False, "then": "pays"}),
        SETTLE,
    ],
    "a replica dies with the charge committed": [
        ("tick_a_replica", {"replica": 0, "dies_at": "charge_committed"}),
        ("tick_a_replica", {"replica": 1, "dies_at": None}),
        SETTLE,
    ],
    "a replica dies with the charge answered": [
        ("tick_a_replica", {"replica": 1, "dies_at": "charge_answered"}),
        SETTLE,
    ],
}
DIES = {name for name, steps in SEQUENCES.items() if any(s[1].get("dies_at") for s in steps)}


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_the_money_paths_hold_in_each_race_and_death(fresh_environ: Any, name: str) -> None:
    """The steps run as hypothesis runs them, every invariant checked after each."""

    class Machine(MoneyMachine):
        def __init__(self) -> None:
            self.environ = fresh_environ()
            super().__init__()

    machine = Machine()
    try:
        for rule_name, arguments in SEQUENCES[name]:
            getattr(machine, rule_name)(**arguments)
            machine.each_period_is_charged_at_most_once()
            machine.never_paid_by_hand_and_charged_at_once()
            machine.no_period_is_paid_by_hand_and_charged()
            machine.each_applied_payment_extended_once()
        assert bool(machine.dead) == (name in DIES), "the monitor was to die on the way"
        outcomes = machine.run(
            machine.db.fetchall("SELECT outcome, last_error FROM provider_events ORDER BY id")
        )
        outcomes = [(row["outcome"], row["last_error"]) for row in outcomes]
        member_charges = machine.run(
            machine.db.fetchval(
                "SELECT count(*) FROM charge_attempts WHERE subscription_id = ?",
                (machine.subs[0]["id"],),
            )
        )
        # Each sequence did meet the race it is named after.
        if name == "polled first, its webhook late and twice":
            assert outcomes == [("ignored", "outcome applied before")]
        if name == "webhook first, polling after":
            assert outcomes == [("applied", None)]
        if name == "paid by hand while the card is due":
            assert member_charges == 0  # postponed, then no longer due
        if name == "the card charged unheard, paying by hand refused":
            assert machine.orders[1]["error"] == "renewal_in_progress"
            assert member_charges == 1
    finally:
        machine.teardown()
