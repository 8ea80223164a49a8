"""The renewal money path as a state machine (hypothesis), against the sandbox, on both backends.

Three members with saved cards are due. Two recurrent_payments replicas, payment_monitor and
tsmonitor tick in any order (the replicas also at the same moment), while the provider fails
(500s, 429s, and answers that come after the client gave up: charged, but nobody heard),
cards are revoked or declined, the shop refunds charges (whole or in part) and both clocks
jump, past the provider's key window too. After every step:

- no subscription period is charged twice at the provider;
- every charge we applied extended its subscription exactly once, and we applied nothing the
  provider did not charge;
- nobody keeps a live subscription past its grace, nor a period whose charge was refunded whole.

`settle` (faults cleared, time passes, every monitor ticks) must then bring our ledger and the
provider's into agreement: each successful charge applied, and no attempt left open.
Examples are derandomized so CI sees the same sequences; a failure prints its steps, which
become a plain test.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections import Counter
from datetime import timedelta
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
from runtime.db import async_database
from runtime.errors import MonitorError, TransientError
from services.sandbox import DEFAULT_BOT_TOKEN, SandboxConfig, build_app
from tests.conftest import DB_BACKENDS, database_environ
from tests.integration.monitors.conftest import (
    FixedClock,
    Monitors,
    Sandbox,
    empty_domain_tables,
    utcnow,
)
from tests.integration.monitors.factories import provider_event
from tests.integration.monitors.test_recurrent_payments import due_subscription

MEMBERS = 3
PERIOD = timedelta(days=30)
GRACE = timedelta(days=3)
#: The client gives up before the sandbox's late answer comes: the charge happened unheard.
CLIENT_TIMEOUT_S = 0.15
LATE_ANSWER_S = 0.4

pytestmark = pytest.mark.timeout(600)


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
        self.db = async_database(Settings.from_env(environ).db)
        await self.db.open()
        self.clock = FixedClock(utcnow())
        self.holder = Monitors(environ, self.db)
        self.replicas = [
            await self.holder.start(RecurrentPayments, self.clock),
            await self.holder.start(RecurrentPayments, self.clock),
        ]
        self.payment_monitor = await self.holder.start(PaymentMonitor, self.clock)
        self.terms = await self.holder.start(TermsMonitor, self.clock)
        for monitor in self.replicas:
            await monitor.yookassa.close()
            monitor.yookassa = YooKassaClient(monitor.ctx.settings, timeout_s=CLIENT_TIMEOUT_S)
            await monitor.yookassa.open()
        self.subs = [await due_subscription(self.db, self.sandbox) for _ in range(MEMBERS)]
        #: Provider ids of charges refunded whole.
        self.refunded: set[str] = set()

    def teardown(self) -> None:
        async def close() -> None:
            for monitor in self.holder.started:
                await monitor.teardown()
            await self.db.close()
            await self.http.close()
            await self.server.close()

        self.run(close())
        self.loop.close()

    # --- what happens ------------------------------------------------------------------------

    async def _tick(self, monitor: Any) -> None:
        # The runner logs a failed tick and ticks again after a backoff: so does the machine.
        # Any other exception is a failure of the machine.
        with contextlib.suppress(MonitorError, TransientError):
            await monitor.tick()

    @rule(replica=st.sampled_from([0, 1]))
    def tick_a_replica(self, replica: int) -> None:
        self.run(self._tick(self.replicas[replica]))

    @rule()
    def tick_both_replicas_at_once(self) -> None:
        async def both() -> None:
            await asyncio.gather(*(self._tick(r) for r in self.replicas))

        self.run(both())

    @rule()
    def tick_payment_monitor(self) -> None:
        self.run(self._tick(self.payment_monitor))

    @rule()
    def tick_terms(self) -> None:
        self.run(self._tick(self.terms))
        self.run(self._nobody_past_grace_is_live())

    @rule(mode=st.sampled_from(["500", "429", "timeout"]), count=st.integers(1, 3))
    def provider_fails(self, mode: str, count: int) -> None:
        body = {"api": "yookassa", "mode": mode, "count": count, "delay_s": LATE_ANSWER_S}
        self.run(self.sandbox.control("POST", "/faults", body))

    @rule(minutes=st.sampled_from([1, 11, 60, 6 * 60, 24 * 60, 4 * 24 * 60]))
    def time_passes(self, minutes: int) -> None:
        self.clock.at += timedelta(minutes=minutes)
        # The provider's clock too: its idempotence keys expire on it.
        self.run(self.sandbox.control("POST", "/clock", {"advance_s": minutes * 60}))

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

    @rule(member=st.integers(0, MEMBERS - 1), full=st.booleans())
    def the_shop_refunds_a_charge(self, member: int, full: bool) -> None:
        """From YooKassa's dashboard: the whole charge, or half of it; the notification that
        botapi records for it follows."""
        sub = self.subs[member]
        charges = self.run(self._provider_charges())[sub["id"]]
        refundable = [
            p for p in charges if p["status"] == "succeeded" and not p.get("refunded_amount")
        ]
        if not refundable:
            return
        charge = refundable[-1]
        body = {} if full else {"amount": f"{Decimal(charge['amount']['value']) / 2:.2f}"}
        path = f"/yookassa/payments/{charge['id']}/refund"
        made = self.run(self.sandbox.control("POST", path, body))
        self.run(provider_event(self.db, made, "refund.succeeded"))
        if full:
            self.refunded.add(charge["id"])

    @rule()
    def settle(self) -> None:
        """Faults cleared, then an hour passes in eleven-minute steps with every monitor ticking:
        whatever the provider did must now be known to us."""
        self.run(self.sandbox.control("POST", "/faults", {"api": "yookassa", "count": 0}))
        for _ in range(6):
            self.clock.at += timedelta(minutes=11)
            for monitor in (*self.replicas, self.payment_monitor):
                self.run(self._tick(monitor))
        self.run(self._ledgers_agree())
        self.run(self._tick(self.terms))
        self.run(self._nobody_past_grace_is_live())
        self.run(self._no_refunded_period_is_live())

    # --- what must hold ----------------------------------------------------------------------

    async def _provider_charges(self) -> dict[int, list[dict[str, Any]]]:
        payments = await self.sandbox.control("GET", "/yookassa/payments")
        by_sub: dict[int, list[dict[str, Any]]] = {sub["id"]: [] for sub in self.subs}
        for payment in payments:
            sub_id = int((payment.get("metadata") or {}).get("subscription_id", 0))
            if sub_id in by_sub:
                by_sub[sub_id].append(payment)
        return by_sub

    async def _applied(self, sub_id: int) -> list[dict[str, Any]]:
        rows = await self.db.fetchall(
            "SELECT provider_payment_id, applied_period_end FROM payments"
            " WHERE subscription_id = ? AND status = 'succeeded' AND processed_at IS NOT NULL",
            (sub_id,),
        )
        return [dict(row) for row in rows]

    async def _ledgers_agree(self) -> None:
        charges = await self._provider_charges()
        for sub in self.subs:
            succeeded = {p["id"] for p in charges[sub["id"]] if p["status"] == "succeeded"}
            applied = {row["provider_payment_id"] for row in await self._applied(sub["id"])}
            assert applied == succeeded, (sub["id"], applied, succeeded)
            still_open = await self.db.fetchval(
                "SELECT count(*) FROM charge_attempts WHERE subscription_id = ?"
                " AND status IN ('created', 'pending')",
                (sub["id"],),
            )
            assert still_open == 0, f"subscription {sub['id']}: an attempt is still open"

    @invariant()
    def each_period_is_charged_at_most_once(self) -> None:
        charges = self.run(self._provider_charges())
        for sub_id, payments in charges.items():
            periods = Counter(
                p["metadata"]["period"] for p in payments if p["status"] == "succeeded"
            )
            assert all(n == 1 for n in periods.values()), (sub_id, periods)

    @invariant()
    def each_applied_charge_extended_once(self) -> None:
        charges = self.run(self._provider_charges())
        for sub in self.subs:
            applied = self.run(self._applied(sub["id"]))
            row = self.run(
                self.db.fetchone(
                    "SELECT current_period_end FROM subscriptions WHERE id = ?", (sub["id"],)
                )
            )
            withdrawn = self.run(self._withdrawn(sub["id"], row["current_period_end"]))
            periods = len(applied) - len(withdrawn)
            assert row["current_period_end"] == sub["end"] + PERIOD * periods, sub["id"]
            succeeded = {p["id"] for p in charges[sub["id"]] if p["status"] == "succeeded"}
            assert {a["provider_payment_id"] for a in applied} <= succeeded

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
        """A full refund of the charge that paid the live period ends it, as an expiry does."""
        for sub in self.subs:
            row = await self.db.fetchone(
                "SELECT s.status, p.provider_payment_id FROM subscriptions s"
                " LEFT JOIN payments p ON p.subscription_id = s.id"
                " AND p.applied_period_end = s.current_period_end"
                " WHERE s.id = ?",
                (sub["id"],),
            )
            if row["provider_payment_id"] in self.refunded:
                assert row["status"] not in ("active", "grace"), (sub["id"], row)

    async def _nobody_past_grace_is_live(self) -> None:
        """Checked right after tsmonitor ticked: it ends what is past grace."""
        live = await self.db.fetchall(
            "SELECT id, current_period_end FROM subscriptions WHERE status IN ('active', 'grace')"
        )
        for row in live:
            assert row["current_period_end"] + GRACE > self.clock.at, row["id"]


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


def test_the_renewal_money_path_holds_whatever_happens(fresh_environ: Any) -> None:
    class Machine(MoneyMachine):
        def __init__(self) -> None:
            self.environ = fresh_environ()
            super().__init__()

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        ),
    )
