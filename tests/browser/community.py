"""The data the browser tests look at, made by the real programs, the demo and the monitors.

Per backend, in a fresh data dir (SQLite) or a fresh database (PostgreSQL): the sandbox,
botapi, the API, the bot, payment_monitor and the web admin run as processes on free ports;
`domos demo`'s scenario (runtime.supervision.demo: a tariff, three members who /start, one who
pays through YooKassa) plays against them, and a second member pays the same way; then what an
operator and members do on a normal day: staff add an event, a useful-message rule and a staff
group in the admin, paid members join the paid chat, talk and send a voice note, listings
channels post, partners get tokens, a member blocks the bot, one cancels his auto-renewal; every
monitor runs once (`domos monitor NAME --once`); members register for the event and answer the
survey; the shop refunds part of a payment. Then a month later on the monitors' and the
sandbox's clocks (as tests/acceptance/e2e moves them): the auto-renewal is charged, the other
member lapses and is banned. Nothing is inserted behind the programs' backs: every row is one
the real code wrote. The programs stop; the web admin keeps serving until the session ends.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from runtime.config import Settings
from runtime.db import Database, sync_database
from runtime.supervision.demo import DEMO_MEMBERS, Demo, ensure_tariff
from services.sandbox import (
    DEFAULT_BOT_TOKEN,
    DEFAULT_YOOKASSA_SECRET_KEY,
    DEFAULT_YOOKASSA_SHOP_ID,
)
from tests.acceptance.e2e.programs import DOMOS, Running
from tests.conftest import database_environ
from tests.integration.bot.conftest import ROOT, free_port, wait_for

STAFF_USERNAME = "staff"
STAFF_PASSWORD = "browser-staff-password-7f3a"
ADMIN_KEY = "browser-admin-key-0123456789abcdef"
SEND_TOKEN = "browser-send-token-0123456789abcdef"
#: The paid chat, a listings channel (NMARKET_CHATS) and the ids of the demo's members.
PAID_CHAT = -1001700000001
NMARKET_CHANNEL = -1001700000002
TRADEAGENT_CHANNEL = -1001700000003
GRACE_DAYS = 3
ANNA, BORIS, VERA = (telegram_id for telegram_id, _ in DEMO_MEMBERS)
LISTING = "ЖК Солнечный, 2-к кв 54,3 м², 7/17 эт, 8 450 000 ₽, комиссия 2,5%"
MONITORS = (
    "eventsmonitor",
    "monthly_anket",
    "tsmonitor",
    "parse_messages",
    "ban_monitor",
    "recurrent_payments",
    "notifymonitor",
)


@dataclass
class Community:
    """One backend's programs and what they made; `web` is the admin's base URL."""

    backend: str
    environ: dict[str, str]
    tmp: Path
    web: str = ""
    sandbox: str = ""
    running: list[Running] = field(default_factory=list)
    #: Facts the tests look for: ids and texts the scenario produced.
    facts: dict[str, Any] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], ready_url: str, timeout_s: float = 90.0) -> None:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*DOMOS, *argv], cwd=ROOT, env=self.environ, stdout=log, stderr=subprocess.STDOUT
            )
        program = Running(name, process, log_path)
        self.running.append(program)

        def up() -> bool:
            assert process.poll() is None, f"{name} exited:\n{program.logs()}"
            try:
                return httpx.get(ready_url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout_s, f"{name} to answer {ready_url}")

    def stop(self, *names: str) -> None:
        for program in reversed(self.running):
            if not names or program.name in names:
                program.stop()
        self.running = [p for p in self.running if p.process.poll() is None]

    def run(self, *argv: str, extra: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [*DOMOS, *argv],
            cwd=ROOT,
            env={**self.environ, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"domos {' '.join(argv)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def server_errors(self, name: str = "web") -> list[str]:
        """The log lines of program `name` at level error or above: a 5xx the browser saw
        is explained by the traceback its server logged."""
        program = next(p for p in self.running if p.name == name)
        return [
            line
            for line in program.logs().splitlines()
            if re.search(r'"level": "(error|critical|exception)"', line)
        ]

    def db(self) -> Database:
        """The DB layer on this backend, unopened (`with community.db() as db:`)."""
        return sync_database(Settings.from_env(self.environ))

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.sandbox}/_sandbox{path}", json=body, timeout=10)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    def sent(self, chat_id: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", f"/telegram/sent?chat_id={chat_id}")
        return result


def community_environ(backend: str, tmp: Path, pg_url: str | None) -> dict[str, str]:
    sandbox = f"http://127.0.0.1:{free_port()}"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("DB_", "DATABASE_", "TELEGRAM_", "YOOKASSA_", "DOMOS_", "SANDBOX_", "WEB_", "API_")
        )
        and k not in ("METRICS_PORT", "DJANGO_SETTINGS_MODULE", "PROMETHEUS_MULTIPROC_DIR")
    }
    return {
        **inherited,
        **database_environ(backend, str(tmp / "data"), pg_url),
        "TELEGRAM_API_URL": sandbox,
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
        "YOOKASSA_API_URL": sandbox,
        "YOOKASSA_SHOP_ID": DEFAULT_YOOKASSA_SHOP_ID,
        "YOOKASSA_SECRET_KEY": DEFAULT_YOOKASSA_SECRET_KEY,
        "BOT_POLLING_TIMEOUT_S": "2",
        "BOTAPI_SEND_TOKEN": SEND_TOKEN,
        "BOTAPI_WORKERS": "1",
        "API_ADMIN_KEY": ADMIN_KEY,
        "PAID_CHAT_IDS": str(PAID_CHAT),
        "NMARKET_CHATS": str(NMARKET_CHANNEL),
        "TRADEAGENT_CHATS": str(TRADEAGENT_CHANNEL),
        "SUBSCRIPTION_GRACE_DAYS": str(GRACE_DAYS),
        "DOMOS_RUN_DIR": str(tmp / "run"),
        "DOMOS_TIMEZONE": "Europe/Moscow",
        # The admin over plain HTTP on loopback, as under `make run`.
        "WEB_SECURE_COOKIES": "false",
        "WEB_STATIC_ROOT": str(tmp / "static"),
        "WEB_STAFF_PASSWORD": STAFF_PASSWORD,
        "DJANGO_SECRET_KEY": "browser-test-secret-key-not-for-production-0123456789",
        "LOG_LEVEL": "info",
    }


def build_community(backend: str, tmp: Path, pg_url: str | None) -> Iterator[Community]:
    """Start the programs, play the day, stop everything but the web admin; yield; stop it."""
    community = Community(backend, community_environ(backend, tmp, pg_url), tmp)
    community.sandbox = community.environ["TELEGRAM_API_URL"]
    try:
        _play(community)
        yield community
    finally:
        community.stop()


def _play(c: Community) -> None:
    ports = {name: free_port() for name in ("botapi", "api", "web")}
    c.run("db", "upgrade")
    c.run("web", "createstaff", "--username", STAFF_USERNAME, "--superuser")
    c.start(
        "sandbox",
        [
            "sandbox",
            "--port",
            c.sandbox.rsplit(":", 1)[1],
            "--no-limits",
            "--webhook-url",
            f"http://127.0.0.1:{ports['botapi']}/yookassa/webhook",
        ],
        f"{c.sandbox}/_sandbox/health",
    )
    botapi = f"http://127.0.0.1:{ports['botapi']}"
    api = f"http://127.0.0.1:{ports['api']}"
    c.web = f"http://127.0.0.1:{ports['web']}"
    c.start("botapi", ["botapi", "--port", str(ports["botapi"])], f"{botapi}/health")
    c.start("api", ["api", "--port", str(ports["api"])], f"{api}/health")
    c.start(
        "web",
        ["web", "--host", "127.0.0.1", "--port", str(ports["web"]), "--workers", "2"],
        f"{c.web}/healthz",
    )
    c.start("bot", ["bot"], f"{c.sandbox}/_sandbox/health")
    wait_for(lambda: '"bot_started"' in _logs(c, "bot"), 90, "the bot to start polling")
    # The demo pays through YooKassa; payment_monitor applies the notification as under make run.
    c.start("payment_monitor", ["monitor", "payment_monitor"], f"{c.sandbox}/_sandbox/health")

    demo = Demo(c.sandbox, api, botapi, timeout_s=90, bot_token=DEFAULT_BOT_TOKEN)
    try:
        demo.wait_until_up()
        tariff = ensure_tariff(c.environ)
        demo.start_members()
        assert demo.subscribe(ANNA, tariff)
        # Not the demo's: Boris pays the same way, for the month-later part below.
        assert demo.subscribe(BORIS, tariff)
    finally:
        demo.close()

    _staff_day(c)
    _members_day(c, api, botapi)
    for monitor in MONITORS:
        c.run("monitor", monitor, "--once")
    # Anna pays and spoke in the paid chat: parse_messages kept her voice note.
    assert _has(c, "SELECT 1 FROM audio_files WHERE status = 'downloaded'", (), db="audio")
    _answers(c)
    _goodwill_refund(c)
    c.run("monitor", "notifymonitor", "--once")
    c.stop("payment_monitor")
    _month_later(c)
    c.stop("bot", "api", "botapi", "sandbox")
    _collect_facts(c)


def _logs(c: Community, name: str) -> str:
    return next(p for p in c.running if p.name == name).logs()


def _staff_day(c: Community) -> None:
    """An event next week and a useful-message rule, added through the admin's own forms."""
    with httpx.Client(base_url=c.web, timeout=30, follow_redirects=True) as web:
        # Someone guessing first: django-axes records the failed attempt (a success clears
        # only its own username's count, so this row stays for the admin's lists).
        login = web.get("/admin/login/")
        mistyped = web.post(
            "/admin/login/",
            data={
                "csrfmiddlewaretoken": _csrf(login.text),
                "username": "admin",
                "password": "admin",
                "next": "/admin/",
            },
        )
        assert mistyped.status_code == 200
        assert "/admin/login/" in str(mistyped.url)
        login = web.get("/admin/login/")
        web.post(
            "/admin/login/",
            data={
                "csrfmiddlewaretoken": _csrf(login.text),
                "username": STAFF_USERNAME,
                "password": STAFF_PASSWORD,
                "next": "/admin/",
            },
        ).raise_for_status()
        starts = datetime.now() + timedelta(days=7)
        _admin_add(
            web,
            "event",
            {
                "title": "Вебинар: ипотека 2026",
                "description": "Ставки, программы, вопросы",
                "location": "Zoom",
                "starts_at_0": starts.strftime("%d.%m.%Y"),
                "starts_at_1": "19:00:00",
                "capacity": "50",
                "status": "published",
            },
        )
        _admin_add(
            web,
            "usefulrule",
            {"kind": "hashtag", "pattern": "#ипотека", "weight": "2", "is_active": "on"},
        )
        _admin_add(web, "group", {"name": "Операторы"}, app="auth")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token in the form"
    return match.group(1)


def _admin_add(web: httpx.Client, model: str, fields: dict[str, str], app: str = "domain") -> None:
    form = web.get(f"/admin/{app}/{model}/add/")
    form.raise_for_status()
    saved = web.post(
        f"/admin/{app}/{model}/add/",
        data={"csrfmiddlewaretoken": _csrf(form.text), **fields, "_save": "Сохранить"},
    )
    assert saved.url.path == f"/admin/{app}/{model}/", f"{model} not saved:\n{saved.text[:3000]}"


def _members_day(c: Community, api: str, botapi: str) -> None:
    c.control(
        "POST", "/telegram/chats", {"id": PAID_CHAT, "type": "supergroup", "title": "Агенты PRO"}
    )
    for channel, title in ((NMARKET_CHANNEL, "NMarket"), (TRADEAGENT_CHANNEL, "TradeAgent")):
        c.control("POST", "/telegram/chats", {"id": channel, "type": "channel", "title": title})
    # Anna and Boris (paid) ask to join the paid chat; the bot approves active members only.
    for member in (ANNA, BORIS):
        c.control("POST", "/telegram/join_requests", {"user_id": member, "chat_id": PAID_CHAT})
    wait_for(
        lambda: not c.control("GET", f"/telegram/join_requests?chat_id={PAID_CHAT}"),
        30,
        "the join requests to be decided",
    )
    # Boris will not renew.
    before = len(c.sent(BORIS))
    c.control("POST", "/telegram/messages", {"user_id": BORIS, "text": "/cancel_autorenew"})
    wait_for(lambda: c.sent(BORIS)[before:], 30, "the bot to confirm /cancel_autorenew")
    c.control(
        "POST",
        "/telegram/messages",
        {
            "user_id": ANNA,
            "chat_id": PAID_CHAT,
            "text": "#ипотека как оформить налоговый вычет за квартиру в новостройке",
        },
    )
    c.control("POST", "/telegram/voice", {"user_id": ANNA, "chat_id": PAID_CHAT, "size": 2048})
    for channel in (NMARKET_CHANNEL, TRADEAGENT_CHANNEL):
        c.control("POST", "/telegram/channel_posts", {"chat_id": channel, "text": LISTING})
    # Partners' tokens, issued through the API's admin endpoints.
    for kind in ("advert", "contract"):
        response = httpx.post(
            f"{api}/v1/admin/{kind}/tokens",
            json={"issued_to": "partner-agency", "scope": "publish", "note": "browser test"},
            headers={"X-API-Key": ADMIN_KEY},
            timeout=10,
        )
        assert response.status_code == 201, response.text
    # Vera blocks the bot; a notification to her ends in the dead letters (403).
    c.control("POST", f"/telegram/users/{VERA}/block", {})
    response = httpx.post(
        f"{botapi}/send",
        json={"chat_id": VERA, "text": "Скидка на продление", "dedupe_key": "promo:vera"},
        headers={"Authorization": f"Bearer {SEND_TOKEN}"},
        timeout=10,
    )
    assert response.status_code in (200, 201, 202), response.text
    wait_for(
        lambda: _has(
            c, "SELECT 1 FROM chat_messages WHERE chat_id = ?", (NMARKET_CHANNEL,), db="useful"
        ),
        30,
        "the bot to save the channel post",
    )
    wait_for(
        lambda: _has(c, "SELECT 1 FROM chat_messages WHERE kind = 'voice'", (), db="useful"),
        30,
        "the bot to save the voice note",
    )


def _has(c: Community, sql: str, params: tuple[Any, ...], *, db: str = "main") -> bool:
    with c.db() as database:
        return database.fetchone(sql, params, db=db) is not None


def _press_first_button(c: Community, chat_id: int, before: int) -> None:
    """Press the first inline button of the newest message the bot sent to `chat_id`."""
    new = wait_for(lambda: [m for m in c.sent(chat_id)[before:] if m.get("reply_markup")], 30)
    message = new[-1]
    button = message["reply_markup"]["inline_keyboard"][0][0]
    c.control(
        "POST",
        "/telegram/callback_queries",
        {"user_id": chat_id, "message_id": message["message_id"], "data": button["callback_data"]},
    )


def _answers(c: Community) -> None:
    """Anna registers for the event and answers the survey's first question with the bot."""
    before = len(c.sent(ANNA))
    c.control("POST", "/telegram/messages", {"user_id": ANNA, "text": "/events"})
    _press_first_button(c, ANNA, before)
    wait_for(lambda: _has(c, "SELECT 1 FROM event_registrations", ()), 30, "the event registration")
    before = len(c.sent(ANNA))
    c.control("POST", "/telegram/messages", {"user_id": ANNA, "text": "/survey"})
    _press_first_button(c, ANNA, before)
    wait_for(lambda: _has(c, "SELECT 1 FROM survey_responses", ()), 30, "a survey answer")


def _goodwill_refund(c: Community) -> None:
    """The shop returns part of Anna's payment from YooKassa's dashboard: the refund.succeeded
    notification reaches botapi, and payment_monitor records a partial refund (her access
    stays)."""
    with c.db() as db:
        paid = db.fetchone(
            "SELECT p.provider_payment_id FROM payments p JOIN users u ON u.id = p.user_id"
            " WHERE u.telegram_id = ? AND p.status = 'succeeded' ORDER BY p.id LIMIT 1",
            (ANNA,),
        )
    assert paid is not None, "Anna's payment did not succeed"
    c.control(
        "POST", f"/yookassa/payments/{paid['provider_payment_id']}/refund", {"amount": "100.00"}
    )
    wait_for(lambda: _has(c, "SELECT 1 FROM refunds", ()), 60, "the refund to be recorded")


def _month_later(c: Community) -> None:
    """A month on (the monitors' business clock and the sandbox clock, as tests/acceptance/e2e
    moves them): Anna's auto-renewal is charged with her saved card; Boris, who cancelled his,
    runs out, goes through grace and is removed from the paid chat."""
    with c.db() as db:
        ends = {
            row["telegram_id"]: row["current_period_end"]
            for row in db.fetchall(
                "SELECT u.telegram_id, s.current_period_end FROM subscriptions s"
                " JOIN users u ON u.id = s.user_id"
            )
        }
    renewal = ends[ANNA] - timedelta(hours=12)
    _at(c, renewal, "recurrent_payments", "payment_monitor", "notifymonitor")
    lapsed = ends[BORIS] + timedelta(days=GRACE_DAYS, hours=1)
    _at(c, lapsed, "tsmonitor", "tsmonitor", "ban_monitor", "notifymonitor")
    c.control("POST", "/clock", {"set": datetime.now(UTC).timestamp()})


def _at(c: Community, moment: datetime, *monitors: str) -> None:
    c.control("POST", "/clock", {"set": moment.timestamp()})
    offset = {"DOMOS_CLOCK_OFFSET_S": f"{(moment - datetime.now(UTC)).total_seconds():.3f}"}
    for monitor in monitors:
        c.run("monitor", monitor, "--once", extra=offset)


def _collect_facts(c: Community) -> None:
    with c.db() as db:
        payment = db.fetchone(
            "SELECT id, provider_payment_id, metadata FROM payments WHERE status = 'succeeded'"
            " ORDER BY id LIMIT 1"
        )
        assert payment is not None, "the demo payment did not succeed"
        assert payment["metadata"], "the demo payment has no metadata"
        event = db.fetchone("SELECT id, payload FROM provider_events ORDER BY id LIMIT 1")
        assert event is not None, "no provider event"
        assert event["payload"], "the provider event has no JSON payload"
        dead = db.fetchone("SELECT id FROM outbox WHERE status = 'dead' ORDER BY id LIMIT 1")
        assert dead is not None, "no dead letter: " + json.dumps(
            [dict(r) for r in db.fetchall("SELECT id, chat_id, status FROM outbox")], default=str
        )
        c.facts.update(
            payment_id=payment["id"],
            provider_payment_id=payment["provider_payment_id"],
            provider_event_id=event["id"],
            dead_outbox_id=dead["id"],
            subscriber=ANNA,
        )
