"""`domos demo`: a small scenario on the embedded stack, so the admin and dashboards have data.

Through the sandbox control API and the REST API, the way real people would cause it: a tariff
(only if there is none), three members who send /start to the bot, and one of them pays for a
subscription. The API is called as each member's Mini App would call it: with initData signed for
the bot (TELEGRAM_BOT_TOKEN), as Telegram signs it, so the demo goes through the same identity
checks as a real member. Idempotent: members who exist are only greeted again, and a member with
a live subscription does not pay twice. `domos run` starts it in the background once supervisord is
coming up; it waits for the programs it needs.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import structlog

from runtime.db import sync_database
from runtime.errors import ConfigError, DemoFailed, DomosError
from runtime.telegram_proof import mini_app_authorization

log = structlog.get_logger("demo")
T = TypeVar("T")

API_URL = "http://127.0.0.1:8001"
BOTAPI_URL = "http://127.0.0.1:6000"
DEMO_TARIFF = ("demo-month", "Demo: one month", 99000, 30)
#: (telegram id, first name); the first one subscribes.
DEMO_MEMBERS = ((700000001, "Anna"), (700000002, "Boris"), (700000003, "Vera"))


@dataclass(frozen=True)
class DemoResult:
    tariff_code: str
    members: tuple[int, ...]
    subscriber: int
    paid_now: bool

    def summary(self) -> str:
        paid = "paid now" if self.paid_now else "already subscribed"
        return (
            f"demo: tariff {self.tariff_code}, members {', '.join(map(str, self.members))};"
            f" {self.subscriber} subscribed ({paid})"
        )


#: The process that started the demo (supervisord, which `domos run` became); when it is gone the
#: stack is stopping and the demo must not linger holding the terminal.
_PARENT_PID = os.getppid()


def wait_for(predicate: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        if os.getppid() != _PARENT_PID:
            raise DemoFailed("demo: the stack stopped before the demo finished")
        try:
            value = predicate()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"demo: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


def ensure_tariff(environ: Mapping[str, str]) -> str:
    """The code of an active tariff; the demo tariff is created when there is no tariff at all."""
    from runtime.config import Settings

    with sync_database(Settings.from_env(environ), name="demo") as db:
        if db.fetchone("SELECT id FROM tariffs LIMIT 1") is None:
            db.execute(
                "INSERT INTO tariffs (code, title, price_minor, period_days) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (code) DO NOTHING",
                DEMO_TARIFF,
            )
            log.info("demo_tariff_created", code=DEMO_TARIFF[0])
        row = db.fetchone("SELECT code FROM tariffs WHERE is_active ORDER BY id LIMIT 1")
    if row is None:
        raise DemoFailed("demo: every tariff is inactive; activate one in the admin")
    return str(row["code"])


def _ok(response: httpx.Response) -> dict[str, Any] | None:
    return response.json() if response.status_code == 200 else None


class Demo:
    def __init__(
        self, sandbox_url: str, api_url: str, botapi_url: str, timeout_s: float, *, bot_token: str
    ) -> None:
        self.sandbox = httpx.Client(base_url=f"{sandbox_url}/_sandbox", timeout=10)
        self.api = httpx.Client(base_url=api_url, timeout=15)
        self.botapi = httpx.Client(base_url=botapi_url, timeout=10)
        self.timeout_s = timeout_s
        self.bot_token = bot_token

    def as_member(self, telegram_id: int) -> dict[str, str]:
        """The headers of `telegram_id`'s Mini App: a fresh initData for every call."""
        return {"Authorization": mini_app_authorization(self.bot_token, telegram_id)}

    def close(self) -> None:
        for client in (self.sandbox, self.api, self.botapi):
            client.close()

    def wait_until_up(self) -> None:
        wait_for(lambda: _ok(self.sandbox.get("/health")), self.timeout_s, "the sandbox")
        wait_for(lambda: _ok(self.api.get("/health")), self.timeout_s, "the API")
        wait_for(lambda: _ok(self.botapi.get("/health")), self.timeout_s, "botapi")

    def subscription(self, telegram_id: int) -> dict[str, Any] | None:
        """The API's subscription status; None while the bot has not registered the member."""
        headers = self.as_member(telegram_id)
        return _ok(self.api.get(f"/v1/subscriptions/{telegram_id}", headers=headers))

    def start_members(self) -> None:
        for telegram_id, first_name in DEMO_MEMBERS:
            user = {"user_id": telegram_id, "first_name": first_name}
            self.sandbox.post("/telegram/users", json=user).raise_for_status()
            message = {**user, "text": "/start"}
            self.sandbox.post("/telegram/messages", json=message).raise_for_status()
        for telegram_id, _ in DEMO_MEMBERS:
            wait_for(
                functools.partial(self.subscription, telegram_id),
                self.timeout_s,
                f"the bot to register {telegram_id}",
            )

    def subscribe(self, telegram_id: int, tariff_code: str) -> bool:
        """Pay for `tariff_code` unless the member's subscription is live; True if paid now."""
        current = self.subscription(telegram_id)
        if current is not None and current["is_active"]:
            return False
        response = self.api.post(
            "/v1/payments",
            json={"telegram_id": telegram_id, "tariff_code": tariff_code},
            headers={"Idempotence-Key": f"demo-{uuid.uuid4()}", **self.as_member(telegram_id)},
        )
        response.raise_for_status()
        payment = response.json()
        provider_id = payment["provider_payment_id"]
        if not provider_id:
            raise DemoFailed(f"demo: the API created payment {payment['id']} without YooKassa")
        # The member pays on the checkout page; YooKassa notifies botapi.
        self.sandbox.post(f"/yookassa/payments/{provider_id}/succeed", json={}).raise_for_status()
        log.info("demo_payment_succeeded", telegram_id=telegram_id, payment_id=payment["id"])
        wait_for(
            lambda: (s := self.subscription(telegram_id)) is not None and s["is_active"],
            self.timeout_s,
            f"the subscription of {telegram_id}",
        )
        return True


def run_demo(environ: Mapping[str, str], *, timeout_s: float = 120.0) -> DemoResult:
    sandbox_url = environ.get("TELEGRAM_API_URL")
    if environ.get("DOMOS_ROLE") != "embedded" or not sandbox_url:
        raise ConfigError("DOMOS_ROLE", "the demo needs the embedded role (the sandbox)")
    bot_token = environ.get("TELEGRAM_BOT_TOKEN")
    if not bot_token:
        raise ConfigError("TELEGRAM_BOT_TOKEN", "the demo signs its members' proofs with it")
    demo = Demo(sandbox_url, API_URL, BOTAPI_URL, timeout_s, bot_token=bot_token)
    try:
        demo.wait_until_up()
        tariff_code = ensure_tariff(environ)
        demo.start_members()
        subscriber = DEMO_MEMBERS[0][0]
        paid_now = demo.subscribe(subscriber, tariff_code)
    finally:
        demo.close()
    members = tuple(telegram_id for telegram_id, _ in DEMO_MEMBERS)
    return DemoResult(tariff_code, members, subscriber, paid_now)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="a small demo scenario on the running embedded stack (idempotent)",
        description=__doc__,
    )
    parser.add_argument(
        "--timeout-s", type=float, default=120.0, help="how long to wait for each step"
    )
    parser.set_defaults(handler=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    try:
        result = run_demo(os.environ, timeout_s=args.timeout_s)
    except (DomosError, httpx.HTTPError) as exc:
        log.error("demo_failed", error=str(exc))
        print(f"demo: failed: {exc}", flush=True)
        return 1
    print(result.summary(), flush=True)
    return 0
