"""Alert delivery: the Alertmanager configuration, rendered from the program catalogue.

Prometheus evaluates prometheus/alerts.yml and sends what fires to Alertmanager, which groups it,
silences what a bigger failure explains (inhibition) and posts it to the operators' Telegram chat
through the bot's own token (the native `telegram_configs` receiver).

Alertmanager 0.25 (Debian bookworm's, and the compose image's version) reads no environment
variable and has no `bot_token_file`, and a chat id must be a YAML integer. So the committed
prometheus/alertmanager.yml is a template with `${TELEGRAM_BOT_TOKEN}`, `${ALERT_CHAT_ID}` and
`${TELEGRAM_API_URL}` left in it; prometheus/alertmanager-entrypoint.sh substitutes them when the
container starts (the tests run the same script). `TELEGRAM_API_URL` points the receiver at the
sandbox wherever the programs use it.

Inhibition, so that one failure sends one message:
- a role's supervisord not answering (`DomosTargetDown{job="supervisor"}`: the container is down)
  silences every other alert of that role;
- a program not RUNNING or FATAL silences its own target-down, monitor and database alerts (its
  scrape job is named after it) and, for FATAL, its not-running and restart-loop alerts. One rule
  per program of the catalogue, since the program is the `program` label on one side and the
  `job` label on the other;
- PostgreSQL down (`DomosPostgresDown`) silences postgres_exporter's target-down alert and the
  programs' pool and query-error alerts;
- a schema behind the running code (`DomosSchemaBehind`) silences the monitors' and the outbox's
  alerts and the waiting HTTP programs' target-down alerts.
"""

from __future__ import annotations

from typing import Any

from runtime.supervision.programs import PROGRAMS

#: Placeholders the entrypoint substitutes from the container's environment.
PLACEHOLDERS = ("TELEGRAM_BOT_TOKEN", "ALERT_CHAT_ID", "TELEGRAM_API_URL")
RECEIVER = "operators"
POSTGRES_DOWN = "DomosPostgresDown"
ALERTMANAGER_PORT = 9093

#: Every alert (each distinct label set: a monitor, a program, a job, a kind) is its own group, so
#: a new one is posted after `group_wait` whatever else fires. Grouped by alert name and role, a
#: new monitor's alert joined the group of one already firing and waited for its
#: `group_interval`; when it resolved before that, it was never posted (payment_monitor silent
#: during a PostgreSQL outage, hidden in notifymonitor's open group). Bursts are kept down by the
#: inhibitions instead. An unchanged firing alert is repeated every `repeat_interval` (critical
#: ones sooner).
GROUP_BY = ("...",)
GROUP_WAIT = "30s"
GROUP_INTERVAL = "5m"
REPEAT_INTERVAL = "4h"
CRITICAL_REPEAT_INTERVAL = "1h"

HEADER = (
    "# Rendered from runtime/observability/alerting.py by `domos observability render`; edit\n"
    "# that module, not this file. The placeholders are filled in from the environment when the\n"
    "# container starts (prometheus/alertmanager-entrypoint.sh): Alertmanager 0.25 reads none.\n"
)

#: Telegram HTML (parse_mode HTML). Alertmanager renders it with html/template, so label and
#: annotation values are escaped and cannot break the markup. One block per alert: a group may
#: hold several (one per program or instance).
MESSAGE = """\
{{ if eq .Status "firing" }}🔥 <b>FIRING</b>{{ else }}✅ <b>RESOLVED</b>{{ end }} \
{{ .CommonLabels.alertname }}{{ if .CommonLabels.role }} ({{ .CommonLabels.role }}){{ end }}
{{ range .Alerts.Firing }}
<b>{{ .Labels.severity }}</b>: {{ .Annotations.summary }}
{{ if .Annotations.description }}{{ .Annotations.description }}
{{ end }}runbook: {{ .Annotations.runbook_url }}
{{ end }}{{ range .Alerts.Resolved }}
resolved: {{ .Annotations.summary }}
{{ end }}"""


SCHEMA_BEHIND = "DomosSchemaBehind"
#: What a schema behind the code explains: the waiting monitors' silence and the outbox they
#: do not deliver.
SCHEMA_BEHIND_EXPLAINS = (
    "DomosMonitorSilent",
    "DomosMonitorNeverSucceeded",
    "DomosMonitorNoLeader",
    "DomosOutboxStalled",
    "DomosOutboxBacklogGrowing",
    "DomosOutboxDeliveryLagging",
)
#: Scrape jobs of the programs that wait before they listen (their /metrics does not answer).
SCHEMA_GATED_LISTENERS = ("api", "web", "botapi")


def _program_inhibitions() -> list[dict[str, Any]]:
    rules = []
    for program in PROGRAMS:
        if program.metrics_port is None:
            continue  # no scrape job, so no alert of its own to silence
        rules.append(
            {
                "source_matchers": [
                    'alertname=~"DomosProgramNotRunning|DomosProgramFatal"',
                    f'program="{program.name}"',
                ],
                "target_matchers": [f'job="{program.name}"'],
                "equal": ["role"],
            }
        )
    return rules


def alertmanager_config() -> dict[str, Any]:
    """The configuration, with the placeholders still in it."""
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
            "routes": [
                {
                    "receiver": RECEIVER,
                    "matchers": ['severity="critical"'],
                    "repeat_interval": CRITICAL_REPEAT_INTERVAL,
                }
            ],
        },
        "inhibit_rules": [
            {
                # The role's container (its supervisord and event listener) does not answer:
                # every program of it is down with it.
                "source_matchers": ['alertname="DomosTargetDown"', 'job="supervisor"'],
                "target_matchers": ['alertname=~"Domos.+"'],
                "equal": ["role"],
            },
            {
                # A FATAL program is also not RUNNING and has restarted in a loop.
                "source_matchers": ['alertname="DomosProgramFatal"'],
                "target_matchers": ['alertname=~"DomosProgramNotRunning|DomosProgramRestartLoop"'],
                "equal": ["role", "program"],
            },
            # PostgreSQL down: postgres_exporter not answering (it hung resolving the stopped
            # container) and the programs' pool and query errors follow from it. Fix PostgreSQL
            # first; whatever still fails once it is back is posted then.
            {
                "source_matchers": [f'alertname="{POSTGRES_DOWN}"'],
                "target_matchers": ['alertname="DomosTargetDown"', 'job="postgres"'],
                "equal": [],
            },
            {
                "source_matchers": [f'alertname="{POSTGRES_DOWN}"'],
                "target_matchers": [
                    'alertname=~"DomosDbPoolWaiting|DomosDbPoolExhausted|DomosDbQueryErrors"'
                ],
                "equal": [],
            },
            # The running code waits for its migrations (runtime/db/schema_gate.py): the
            # monitors make no progress, the outbox is not delivered and the HTTP programs do
            # not listen, all because of it. Run `domos db upgrade`; whatever still fails after
            # is posted then.
            {
                "source_matchers": [f'alertname="{SCHEMA_BEHIND}"'],
                "target_matchers": [f'alertname=~"{"|".join(SCHEMA_BEHIND_EXPLAINS)}"'],
                "equal": [],
            },
            {
                "source_matchers": [f'alertname="{SCHEMA_BEHIND}"'],
                "target_matchers": [
                    'alertname="DomosTargetDown"',
                    f'job=~"{"|".join(SCHEMA_GATED_LISTENERS)}"',
                ],
                "equal": [],
            },
            *_program_inhibitions(),
        ],
        "receivers": [
            {
                "name": RECEIVER,
                "telegram_configs": [
                    {
                        "bot_token": "${TELEGRAM_BOT_TOKEN}",
                        "chat_id": "${ALERT_CHAT_ID}",
                        "api_url": "${TELEGRAM_API_URL}",
                        "parse_mode": "HTML",
                        "send_resolved": True,
                        "message": MESSAGE,
                    }
                ],
            }
        ],
    }


def _placeholder_scalar(name: str) -> tuple[str, str]:
    """How a placeholder appears in the rendered file: the chat id bare (a YAML integer once
    filled in), the others in single quotes (a token or URL stays a string whatever it holds;
    the entrypoint refuses values with a quote)."""
    plain = "${" + name + "}"
    return plain, plain if name == "ALERT_CHAT_ID" else f"'{plain}'"


def render_alertmanager_config() -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None  # the message template, readable as written
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    body: str = yaml.dump(
        alertmanager_config(),
        Dumper=Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    for name in PLACEHOLDERS:
        plain, written = _placeholder_scalar(name)
        line = f": {plain}\n"
        assert body.count(line) == 1, name
        body = body.replace(line, f": {written}\n")
    return HEADER + body


def alerting_block(target: str) -> dict[str, Any]:
    """Prometheus' `alerting:` section: where fired alerts go."""
    return {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
