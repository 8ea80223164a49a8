"""A new alert is posted even while another instance of the same alert fires in the same role.

Grouped by alert name and role, DomosMonitorSilent for payment_monitor joined the group that
notifymonitor's alert had opened, waited for the group interval, and was never posted when it
resolved before that. Here the real Alertmanager (the committed config through the compose
entrypoint, group_wait shortened, group_interval as committed) gets one monitor's alert, posts
it through the sandbox's Telegram Bot API, then gets a second monitor's: its message must follow
within seconds, not after the group interval.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.observability import alerting
from runtime.supervision.embedded import SANDBOX_BOT_TOKEN
from tests.integration.infra import stack
from tests.ports import free_port

pytestmark = pytest.mark.slow

OPERATORS_CHAT_ID = -1001000000043


def fast_group_wait_template() -> str:
    text = (stack.REPO / "prometheus" / "alertmanager.yml").read_text()
    line = f"  group_wait: {alerting.GROUP_WAIT}\n"
    assert text.count(line) == 1
    assert f"  group_interval: {alerting.GROUP_INTERVAL}\n" in text  # minutes: left as it is
    return text.replace(line, "  group_wait: 1s\n")


def silent(monitor: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": "DomosMonitorSilent",
            "severity": "critical",
            "role": "monitors",
            "job": monitor,
            "instance": f"monitors:{monitor}",
            "monitor": monitor,
        },
        "annotations": {
            "summary": f"monitor {monitor} has made no progress for 3 intervals",
            "runbook_url": "docs/runbooks/DomosMonitorSilent.md",
        },
    }


def post_alerts(am: str, alerts: list[dict[str, Any]]) -> None:
    """Alertmanager's API v2, as Prometheus sends them."""
    request = urllib.request.Request(
        f"{am}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def firing_about(sandbox: str, monitor: str) -> list[dict[str, Any]]:
    return [m for m in sent(sandbox, f"monitor {monitor} has made") if "FIRING" in m["text"]]


@pytest.fixture
def delivery(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(sandbox URL, Alertmanager URL)."""
    port = free_port()
    sandbox = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            str(stack.BIN / "domos"),
            "sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--bot-token",
            SANDBOX_BOT_TOKEN,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        stack.wait_for(lambda: stack.get_json(sandbox, "/_sandbox/health"), 60, "sandbox up")
        stack.post_json(
            sandbox,
            "/_sandbox/telegram/chats",
            {"id": OPERATORS_CHAT_ID, "type": "supergroup", "title": "domos operators"},
        )
        env = {
            "TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN,
            "ALERT_CHAT_ID": str(OPERATORS_CHAT_ID),
            "TELEGRAM_API_URL": sandbox,
        }
        with stack.alertmanager(tmp_path, fast_group_wait_template(), env) as am:
            yield sandbox, am
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def sent(sandbox: str, words: str) -> list[dict[str, Any]]:
    """The operators' chat messages holding `words`."""
    messages = stack.get_json(sandbox, "/_sandbox/telegram/sent") or []
    return [m for m in messages if m["chat"]["id"] == OPERATORS_CHAT_ID and words in m["text"]]


def wait_inhibited(am: str, names: set[str], what: str) -> None:
    stack.wait_for(
        lambda: (
            {
                a["labels"]["alertname"]
                for a in stack.get_json(am, "/api/v2/alerts") or []
                if a["status"]["inhibitedBy"]
            }
            >= names
            or None
        ),
        30,
        what,
    )


def test_a_second_monitor_silent_is_posted_while_the_first_fires(delivery: tuple[str, str]) -> None:
    sandbox, am = delivery
    post_alerts(am, [silent("notifymonitor")])
    stack.wait_for(lambda: firing_about(sandbox, "notifymonitor"), 30, "the first alert posted")

    post_alerts(am, [silent("notifymonitor"), silent("payment_monitor")])
    stack.wait_for(
        lambda: firing_about(sandbox, "payment_monitor"),
        30,
        "the second monitor's alert posted well before the group interval",
    )
    assert len(firing_about(sandbox, "notifymonitor")) == 1  # the first is not repeated


def test_postgres_down_holds_back_the_exporter_and_pool_alerts(
    delivery: tuple[str, str],
) -> None:
    """A stopped postgres container: the exporter hung (DomosTargetDown blamed it, and its
    runbook said to restart it) and the pools waited. One message: PostgreSQL is down."""
    sandbox, am = delivery
    down = {
        "labels": {"alertname": "DomosPostgresDown", "severity": "critical"},
        "annotations": {"summary": "PostgreSQL does not accept connections"},
    }
    exporter = {
        "labels": {
            "alertname": "DomosTargetDown",
            "severity": "critical",
            "job": "postgres",
            "instance": "postgres-exporter:9187",
        },
        "annotations": {"summary": "postgres on postgres-exporter:9187 does not answer /metrics"},
    }
    waiting = {
        "labels": {
            "alertname": "DomosDbPoolWaiting",
            "severity": "warning",
            "job": "api",
            "instance": "api:8001",
            "pool": "main",
        },
        "annotations": {"summary": "api waits for database connections"},
    }
    post_alerts(am, [down, exporter, waiting])

    stack.wait_for(
        lambda: sent(sandbox, "PostgreSQL does not accept connections"), 30, "the message"
    )
    wait_inhibited(
        am,
        {"DomosTargetDown", "DomosDbPoolWaiting"},
        "the exporter's and the pool's alerts inhibited",
    )
    time.sleep(3)  # past their group wait: nothing was posted about them
    assert sent(sandbox, "does not answer /metrics") == []
    assert sent(sandbox, "waits for database connections") == []


def test_a_schema_behind_holds_back_what_the_waiting_programs_cause(
    delivery: tuple[str, str],
) -> None:
    """New code deployed without `domos db upgrade`: every program waits, so the monitors fall
    silent, the outbox stalls and the API stops answering /metrics. One message: the schema."""
    sandbox, am = delivery
    behind = {
        "labels": {"alertname": "DomosSchemaBehind", "severity": "critical", "logical_db": "main"},
        "annotations": {"summary": "main lacks 1 migration(s) the running code needs"},
    }
    api_down = {
        "labels": {
            "alertname": "DomosTargetDown",
            "severity": "critical",
            "role": "api",
            "job": "api",
            "instance": "api:8001",
        },
        "annotations": {"summary": "api on api:8001 does not answer /metrics"},
    }
    stalled = {
        "labels": {
            "alertname": "DomosOutboxStalled",
            "severity": "critical",
            "role": "monitors",
            "job": "notifymonitor",
        },
        "annotations": {"summary": "the outbox is not being delivered"},
    }
    post_alerts(am, [behind, silent("eventsmonitor"), api_down, stalled])

    stack.wait_for(lambda: sent(sandbox, "lacks 1 migration"), 30, "the schema's message")
    wait_inhibited(
        am,
        {"DomosMonitorSilent", "DomosTargetDown", "DomosOutboxStalled"},
        "the monitors', the outbox's and the API's alerts inhibited",
    )
    time.sleep(3)  # past their group wait: nothing was posted about them
    assert sent(sandbox, "has made no progress") == []
    assert sent(sandbox, "does not answer /metrics") == []
    assert sent(sandbox, "outbox is not being delivered") == []
