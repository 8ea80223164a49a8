"""Issue 7's acceptance tests on real processes: `domos run` (role embedded: every program and the
sandbox under supervisord) on PostgreSQL — a throwaway cluster of our own, so that it can be
restarted mid-run without touching the shared server.

One stack serves the whole module (starting it is the expensive part); the tests run in file
order and the last one stops it with SIGTERM while notifymonitor is in the middle of a tick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from monitors.decisions.text_split import split_message
from runtime.supervision.embedded import SANDBOX_BOT_TOKEN
from runtime.supervision.programs import LISTENER_NAME, by_name, roles
from runtime.telegram_proof import mini_app_authorization
from tests.acceptance.stack.stack import (
    Stack,
    ThrowawayPostgres,
    free_port,
    stack_environment,
    wait_for,
)

pytestmark = pytest.mark.slow

API = "http://127.0.0.1:8001"
BOTAPI = "http://127.0.0.1:6000"
#: Telegram ids of this module's members (the demo uses 700000001..3).
OUTBOX_CHAT = 710000001
PAYER = 710000002
LONG_CHAT = 710000003


def as_member(telegram_id: int) -> dict[str, str]:
    """The member's Mini App headers: initData signed for the embedded stack's (sandbox) bot."""
    return {"Authorization": mini_app_authorization(SANDBOX_BOT_TOKEN, telegram_id)}


def member_status(telegram_id: int) -> httpx.Response:
    return httpx.get(
        f"{API}/v1/subscriptions/{telegram_id}", headers=as_member(telegram_id), timeout=10
    )


#: Parts of the message in flight at SIGTERM: ~1 s each, more than web and the stop of the
#: groups before the monitors take, less than notifymonitor's stop_timeout_s (30 s).
LONG_PARTS = 15


@pytest.fixture(scope="module")
def postgres() -> Iterator[ThrowawayPostgres]:
    # Not under pytest's tmp_path: its directories are 0700 root, and the server runs as postgres.
    parent = Path(tempfile.mkdtemp(prefix="domos-acceptance-pg-"))
    parent.chmod(0o755)
    cluster = ThrowawayPostgres(parent / "cluster")
    cluster.init()
    try:
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE domos")
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="module")
def stack(postgres: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("stack") / "home"
    running = Stack(home, stack_environment(postgres.url("domos"), free_port()))
    running.start()
    try:
        wait_for(
            lambda: (s := running.states()) and all(v == "RUNNING" for v in s.values()) and s,
            120,
            "every program RUNNING",
            step_s=0.5,
        )
        yield running
    finally:
        running.stop()


def qualified(name: str) -> str:
    program = by_name()[name]
    return name if program.role == name else f"{program.role}:{name}"


def running_again(stack: Stack, name: str, old_pid: int) -> float:
    """Seconds from now until `name` is RUNNING with a new pid."""
    started = time.monotonic()
    info = wait_for(
        lambda: (
            (i := stack.processes().get(qualified(name), {})).get("statename") == "RUNNING"
            and i["pid"] != old_pid
            and i
        ),
        10,
        f"{name} RUNNING again",
        step_s=0.05,
    )
    assert info["pid"] != old_pid
    return time.monotonic() - started


def send(stack: Stack, chat_id: int, text: str) -> int:
    token = stack.secrets()["BOTAPI_SEND_TOKEN"]
    response = httpx.post(
        f"{BOTAPI}/send",
        json={"chat_id": chat_id, "text": text, "dedupe_key": f"acceptance:{text}"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    return response.status_code


def sent_texts(stack: Stack, chat_id: int) -> list[str]:
    answer = httpx.get(f"{stack.sandbox}/telegram/sent", params={"chat_id": chat_id}, timeout=10)
    answer.raise_for_status()
    return [message.get("text", "") for message in answer.json()]


def test_every_program_running_and_listed_by_role(stack: Stack) -> None:
    embedded = roles()["embedded"]
    assert set(stack.states()) == {qualified(p.name) for p in embedded} | {LISTENER_NAME}
    for role in ("api", "web", "bot", "monitors", "sandbox"):
        # A program named like its group shows bare (`bot`), the others as `group:name`.
        listed = {line.split()[0] for line in stack.ctl("status", f"{role}:*").splitlines()}
        assert listed == {qualified(p.name) for p in roles()[role]}, role

    # The demo that `domos run` starts leaves a paying member behind.
    def demo_subscriber() -> bool:
        answer = member_status(700000001)
        return answer.status_code == 200 and answer.json()["is_active"]

    wait_for(demo_subscriber, 90, "the demo's subscription", step_s=1)


@pytest.mark.parametrize("name", ["notifymonitor", "api"])
def test_kill_9_is_running_again_within_3_s(stack: Stack, name: str) -> None:
    old_pid = stack.pid(qualified(name))
    os.kill(old_pid, signal.SIGKILL)
    elapsed = running_again(stack, name, old_pid)
    print(f"{name}: RUNNING again {elapsed:.2f} s after kill -9")
    assert elapsed <= 3.0


def test_outbox_item_sent_after_notifymonitor_was_killed_is_delivered(stack: Stack) -> None:
    httpx.post(f"{stack.sandbox}/telegram/users", json={"user_id": OUTBOX_CHAT}).raise_for_status()
    old_pid = stack.pid(qualified("notifymonitor"))
    os.kill(old_pid, signal.SIGKILL)
    assert send(stack, OUTBOX_CHAT, "after kill -9") == 201
    running_again(stack, "notifymonitor", old_pid)
    wait_for(lambda: "after kill -9" in sent_texts(stack, OUTBOX_CHAT), 20, "delivery")
    assert sent_texts(stack, OUTBOX_CHAT).count("after kill -9") == 1


def _send_eventually(stack: Stack, text: str) -> None:
    """botapi answers 503 while the database is away; a client retries with the same key."""
    wait_for(lambda: send(stack, OUTBOX_CHAT, text) in (200, 201), 20, f"/send {text!r}")


def test_postgres_restart_every_program_healthy_within_10_s_nothing_lost_or_doubled(
    stack: Stack, postgres: ThrowawayPostgres
) -> None:
    sandbox = stack.sandbox
    httpx.post(f"{sandbox}/telegram/users", json={"user_id": PAYER}).raise_for_status()
    httpx.post(
        f"{sandbox}/telegram/messages", json={"user_id": PAYER, "text": "/start"}
    ).raise_for_status()
    wait_for(
        lambda: member_status(PAYER).status_code == 200,
        30,
        "the bot to register the payer",
    )
    payment = httpx.post(
        f"{API}/v1/payments",
        json={"telegram_id": PAYER, "tariff_code": "demo-month"},
        headers={"Idempotence-Key": "acceptance-restart", **as_member(PAYER)},
        timeout=15,
    )
    assert payment.status_code == 201, payment.text
    provider_id = payment.json()["provider_payment_id"]
    before = [f"before restart {i}" for i in range(3)]
    for text in before:
        _send_eventually(stack, text)

    postgres.stop("fast")
    # While the database is down the member pays: YooKassa's notification to botapi fails and
    # is retried (1 s, then 5 s); payment_monitor would also reconcile it.
    httpx.post(f"{sandbox}/yookassa/payments/{provider_id}/succeed", json={}).raise_for_status()
    time.sleep(1)
    postgres.start()
    restarted = time.monotonic()

    healthy = wait_for(
        lambda: (r := stack.health()).returncode == 0 and r, 10, "domos health", step_s=0.5
    )
    assert time.monotonic() - restarted <= 10.0, healthy.stdout
    after = [f"after restart {i}" for i in range(3)]
    for text in after:
        _send_eventually(stack, text)
    # A retry of a request that the restart may have interrupted is answered from the same row.
    for text in before:
        assert send(stack, OUTBOX_CHAT, text) == 200

    def delivered() -> list[str] | None:
        texts = sent_texts(stack, OUTBOX_CHAT)
        return texts if all(text in texts for text in before + after) else None

    texts = wait_for(delivered, 30, "every outbox item delivered", step_s=0.5)
    assert {text: texts.count(text) for text in before + after} == dict.fromkeys(before + after, 1)

    def subscribed() -> bool:
        answer = member_status(PAYER)
        return answer.status_code == 200 and answer.json()["is_active"]

    wait_for(subscribed, 30, "the payer's subscription", step_s=0.5)
    with psycopg.connect(postgres.url("domos")) as conn:
        rows = conn.execute(
            "SELECT p.status, count(*) FROM main.payments p JOIN main.users u ON u.id = p.user_id"
            " WHERE u.telegram_id = %s GROUP BY p.status",
            (PAYER,),
        ).fetchall()
        subscriptions = conn.execute(
            "SELECT count(*) FROM main.subscriptions s JOIN main.users u ON u.id = s.user_id"
            " WHERE u.telegram_id = %s",
            (PAYER,),
        ).fetchone()
        outbox = conn.execute(
            "SELECT count(*) FROM main.outbox WHERE chat_id = %s", (OUTBOX_CHAT,)
        ).fetchone()
    assert rows == [("succeeded", 1)]
    assert subscriptions == (1,)
    assert outbox == (len(before) + len(after) + 1,)  # + the item of the kill -9 test


def _program_events(log: str, program: str) -> list[dict[str, Any]]:
    """The JSON log lines of `program` in supervisord's merged output, in order."""
    events = []
    for line in log.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue  # supervisord's own lines, or a line cut by another program's output
        if isinstance(record, dict) and record.get("program") == program:
            events.append(record)
    return events


def test_sigterm_stops_every_program_within_its_stopwaitsecs_and_finishes_the_tick_in_flight(
    stack: Stack, postgres: ThrowawayPostgres
) -> None:
    assert stack.proc is not None
    # A notification of LONG_PARTS parts keeps one notifymonitor tick busy for about as many
    # seconds: after the first part each waits for Telegram's per-chat limit (1 message/s).
    httpx.post(f"{stack.sandbox}/telegram/users", json={"user_id": LONG_CHAT}).raise_for_status()
    text = "\n\n".join(f"Часть {i + 1}. " + "слово " * 500 for i in range(LONG_PARTS))
    parts = len(split_message(text, parse_mode=None))
    assert parts == LONG_PARTS
    with psycopg.connect(postgres.url("domos")) as conn:
        found = conn.execute(
            "INSERT INTO main.outbox (dedupe_key, chat_id, text) VALUES (%s, %s, %s) RETURNING id",
            ("acceptance:long", LONG_CHAT, text),
        ).fetchone()
    assert found is not None
    wait_for(lambda: len(sent_texts(stack, LONG_CHAT)) >= 2, 30, "the long message under way")

    longest = max(program.stopwaitsecs for program in roles()["embedded"])
    started = time.monotonic()
    stack.proc.send_signal(signal.SIGTERM)
    try:
        returncode = stack.proc.wait(timeout=longest + 15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"supervisord still running {longest + 15} s after SIGTERM")
    elapsed = time.monotonic() - started
    log = Path(stack.log).read_text(errors="replace")
    assert returncode == 0, log[-3000:]
    stopped = dict(re.findall(r"stopped: (\S+) \(([^)]*)\)", log))
    expected = {p.name for p in roles()["embedded"]}
    assert expected <= set(stopped), sorted(expected - set(stopped))
    # supervisord SIGKILLs a program still running at its stopwaitsecs: "terminated by SIGKILL".
    assert not [name for name, how in stopped.items() if "SIGKILL" in how], stopped
    assert elapsed < longest, elapsed
    monitors = [p.name for p in roles()["monitors"] if p.command.startswith("domos monitor")]
    assert {name: stopped[name] for name in monitors} == dict.fromkeys(monitors, "exit status 0")

    # notifymonitor was asked to stop while the tick ran, and the tick ran to its end: every
    # part delivered and recorded, the row released, no cancellation at the stop deadline.
    events = _program_events(log, "notifymonitor")
    kinds = [event["event"] for event in events]
    stopping = kinds.index("monitor_stopping")
    assert events[stopping]["tick_in_flight"] is True, events[stopping]
    after = events[stopping + 1 :]
    finished = [event for event in after if event["event"] == "tick_succeeded"]
    assert finished, [event["event"] for event in after]
    assert finished[0]["items"] >= 1
    assert "tick_cancelled" not in kinds
    assert after[-1]["event"] == "monitor_stopped"
    assert after[-1]["exit_code"] == 0
    with psycopg.connect(postgres.url("domos")) as conn:
        row = conn.execute(
            "SELECT status, parts_sent, lease_owner FROM main.outbox WHERE id = %s", (found[0],)
        ).fetchone()
    assert row == ("sent", parts, None)
    print(
        f"supervisord stopped in {elapsed:.1f} s; notifymonitor's tick in flight ran"
        f" {finished[0]['duration_s']:.1f} s and delivered all {parts} parts"
    )
