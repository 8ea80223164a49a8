"""Alerts reach the operators' Telegram chat: a program of the embedded role (real supervisord)
is stopped, the real Prometheus fires DomosProgramNotRunning from the project's rules, the real
Alertmanager (started by the compose entrypoint from the committed config) posts it through the
sandbox's Telegram Bot API into the operators' chat, and the resolved message follows when the
program runs again. Its own target-down alert is inhibited: one failure, one message.

Only timings are shortened, in the test's copies: evaluation every second, the two alerts'
`for:` and Alertmanager's group wait and interval.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.observability import alerting
from runtime.observability.metric_names import ALERTMANAGER_METRICS
from runtime.supervision.embedded import SANDBOX_BOT_TOKEN
from tests.integration.infra import stack

pytestmark = pytest.mark.slow

OPERATORS_CHAT_ID = -1001000000042
PROGRAM = "tsmonitor"
#: NotRunning fires first so that the inhibition of the target-down alert is in place before
#: Alertmanager's group wait ends (in production both wait 2 minutes and group_wait is 30 s).
FOR = {"DomosProgramNotRunning": "2s", "DomosTargetDown": "6s"}


def fast_rules(path: Path) -> Path:
    rules = yaml.safe_load((stack.REPO / "prometheus" / "alerts.yml").read_text())
    changed = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] in FOR:
                rule["for"] = FOR[rule["alert"]]
                changed += 1
    assert changed == len(FOR)
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def fast_alertmanager_template() -> str:
    text = (stack.REPO / "prometheus" / "alertmanager.yml").read_text()
    for setting, committed, fast in (
        ("group_wait", alerting.GROUP_WAIT, "2s"),
        ("group_interval", alerting.GROUP_INTERVAL, "2s"),
    ):
        line = f"  {setting}: {committed}\n"
        assert text.count(line) == 1, setting
        text = text.replace(line, f"  {setting}: {fast}\n")
    return text


def sent_to_operators(sandbox: str, *words: str) -> list[dict[str, Any]]:
    """Messages in the operators' chat whose text holds every one of `words`."""
    sent = stack.get_json(sandbox, "/_sandbox/telegram/sent") or []
    return [
        message
        for message in sent
        if message["chat"]["id"] == OPERATORS_CHAT_ID
        and all(word in message["text"] for word in words)
    ]


@pytest.fixture
def delivery(tmp_path: Path) -> Iterator[tuple[Path, str, str, str]]:
    """(supervisord config, sandbox URL, Prometheus URL, Alertmanager URL), every program up."""
    sandbox_port = stack.free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    with stack.embedded(tmp_path, sandbox_port) as config:
        stack.wait_for(lambda: stack.get_json(sandbox, "/_sandbox/health"), 60, "sandbox up")
        chat = stack.post_json(
            sandbox,
            "/_sandbox/telegram/chats",
            {"id": OPERATORS_CHAT_ID, "type": "supergroup", "title": "domos operators"},
        )
        assert chat["id"] == OPERATORS_CHAT_ID
        env = {
            # The bot token `domos run` gives the programs and the sandbox without a real one.
            "TELEGRAM_BOT_TOKEN": SANDBOX_BOT_TOKEN,
            "ALERT_CHAT_ID": str(OPERATORS_CHAT_ID),
            "TELEGRAM_API_URL": sandbox,
        }
        with stack.alertmanager(tmp_path, fast_alertmanager_template(), env) as am:
            rules = fast_rules(tmp_path / "alerts.yml")

            def prometheus_config(port: int) -> dict[str, Any]:
                result = stack.localhost_config(port, {"alertmanager": int(am.rsplit(":", 1)[1])})
                result["rule_files"] = [str(rules)]
                result["alerting"] = alerting.alerting_block(am.removeprefix("http://"))
                return result

            with stack.prometheus(tmp_path, prometheus_config) as prom:
                yield config, sandbox, prom, am


def _targets_up(prom: str) -> bool:
    answer = stack.get_json(prom, "/api/v1/targets")
    active = answer["data"]["activeTargets"] if answer else []
    return bool(active) and all(target["health"] == "up" for target in active)


def _alerts(prom: str, name: str) -> list[dict[str, Any]]:
    answer = stack.get_json(prom, "/api/v1/alerts") or {"data": {"alerts": []}}
    return [a for a in answer["data"]["alerts"] if a["labels"]["alertname"] == name]


def test_a_stopped_program_is_alerted_in_the_operators_chat_then_resolved(
    delivery: tuple[Path, str, str, str],
):
    config, sandbox, prom, am = delivery
    stack.wait_for(lambda: _targets_up(prom), 90, "every target up")
    # Other alerts may fire on a loaded machine (a slow scrape is a down target): the test
    # follows the messages about its own program.
    not_running = ("DomosProgramNotRunning", f"{PROGRAM} (monitors) is not RUNNING")
    assert sent_to_operators(sandbox, *not_running) == []

    stack.supervisorctl(config, "stop", f"monitors:{PROGRAM}")
    firing = stack.wait_for(
        lambda: sent_to_operators(sandbox, "FIRING", *not_running),
        60,
        "the firing message in the operators' chat",
    )
    (message,) = firing
    assert "runbook: docs/runbooks/DomosProgramNotRunning.md" in message["text"]
    # parse_mode HTML: the sandbox parsed the markup into entities, as Telegram does.
    bold = [e for e in message["entities"] if e["type"] == "bold"]
    assert bold[0]["length"] == len("FIRING"), message

    # The program's own target is down too, and Alertmanager holds that alert back.
    stack.wait_for(
        lambda: [
            a
            for a in _alerts(prom, "DomosTargetDown")
            if a["labels"]["job"] == PROGRAM and a["state"] == "firing"
        ],
        30,
        "DomosTargetDown firing in Prometheus",
    )
    inhibited = stack.wait_for(
        lambda: [
            a
            for a in stack.get_json(am, "/api/v2/alerts") or []
            if a["labels"]["alertname"] == "DomosTargetDown" and a["status"]["inhibitedBy"]
        ],
        30,
        "DomosTargetDown inhibited in Alertmanager",
    )
    assert inhibited[0]["labels"]["job"] == PROGRAM
    time.sleep(5)  # two more group intervals: still nothing about the target
    assert sent_to_operators(sandbox, "DomosTargetDown", f"{PROGRAM} on ") == []

    stack.supervisorctl(config, "start", f"monitors:{PROGRAM}")
    resolved = stack.wait_for(
        lambda: sent_to_operators(sandbox, "RESOLVED", f"resolved: {not_running[1]}"),
        60,
        "the resolved message in the operators' chat",
    )
    assert resolved[0]["text"].startswith("✅ RESOLVED DomosProgramNotRunning (monitors)")
    assert len(sent_to_operators(sandbox, not_running[1])) == 2

    # Alertmanager counts its deliveries: the series the runbooks point operators at exist.
    metrics = stack.get_text(f"{am}/metrics") or ""
    for name in ALERTMANAGER_METRICS:
        assert f"\n{name}{{" in metrics, name
    sent = re.search(
        r'^alertmanager_notifications_total\{integration="telegram"\} (\d+)', metrics, re.M
    )
    assert sent is not None
    assert int(sent.group(1)) >= 2
