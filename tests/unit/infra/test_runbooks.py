"""docs/runbooks/: one per alert, linked from the alert, and naming only what exists.

Every alert in prometheus/alerts.yml carries `runbook_url: docs/runbooks/<alert>.md`; every
runbook says what the alert means, how to confirm it, how to fix it and when to escalate. What a
runbook tells an operator to run or look at must exist: each `domos ...` command parses with the
real CLI parser, `docker-compose exec|logs|restart SERVICE` names a compose service,
`supervisorctl` targets (`role:program`) are in the program catalogue, every metric name is
exported by the code (or postgres_exporter, Alertmanager, Prometheus itself) and every alert
name is a rule.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.cli import COMMAND_OWNERS, build_parser
from runtime.observability.metric_names import EXTERNAL_METRICS, defined_metrics
from runtime.supervision.programs import by_name

SECTIONS = ("What it means", "Confirm", "Fix", "Escalate")
_FENCE = re.compile(r"```[a-z]*\n(.*?)```", re.S)
_INLINE = re.compile(r"`([^`\n]+)`")
_METRIC = re.compile(r"\b((?:domos|pg|alertmanager)_[a-z0-9_]+)\b")
_ALERT = re.compile(r"\b(Domos[A-Z][A-Za-z]+)\b")
_SUPERVISOR_TARGET = re.compile(r"^([a-z_]+):([a-z_*]+)$")
_SEPARATORS = {"&&", "||", ";", "|"}
_COMPOSE_VERBS = {"exec", "logs", "restart", "stop", "start", "up", "ps", "top"}
#: PostgreSQL's client programs, which the metric pattern would take for pg_* series.
_POSTGRES_TOOLS = {"pg_isready", "pg_dump", "pg_dumpall", "pg_restore"}
#: A host address with the port written out: compose publishes them from .env
#: (`PROMETHEUS_PUBLISHED_PORT`, ...), so the runbooks ask `docker-compose port SERVICE PORT`.
_FIXED_PORT = re.compile(r"(?:127\.0\.0\.1|localhost):\d")
_SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
#: docker-compose 1.29.2 (Debian's, supported) has no `logs --since`: it prints its usage and
#: exits 0, so `docker-compose logs --since=12h monitors | grep backup_failed` finds nothing
#: and looks like "no errors".
NO_SINCE = "docker-compose v1 has no `logs --since` (use `docker logs --since`)"
#: Options of those verbs that take a separate value.
_VALUE_OPTIONS = {"-e", "-u", "-w", "--env", "--user", "--workdir", "--tail"}


@pytest.fixture(scope="module")
def alerts(repo: Path) -> dict[str, dict[str, Any]]:
    rules = yaml.safe_load((repo / "prometheus/alerts.yml").read_text())
    return {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}


@pytest.fixture(scope="module")
def runbooks(repo: Path) -> dict[str, str]:
    return {
        path.stem: path.read_text()
        for path in sorted((repo / "docs/runbooks").glob("*.md"))
        if path.name != "README.md"
    }


@pytest.fixture(scope="module")
def defined(repo: Path) -> set[str]:
    return defined_metrics([repo / "runtime", repo / "monitors", repo / "services"])


def code_of(markdown: str) -> list[str]:
    """The shell lines of a runbook: fenced blocks line by line (`\\` continuations joined),
    and inline code spans."""
    lines: list[str] = []
    for block in _FENCE.findall(markdown):
        lines += [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    prose = _FENCE.sub("", markdown)
    lines += _INLINE.findall(prose)
    return [line for line in lines if line and not line.startswith("#")]


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line.removeprefix("$ "), comments=True)
    except ValueError:
        return line.split()


def _commands(line: str) -> Iterator[list[str]]:
    """Each simple command of a shell line, split at separators."""
    command: list[str] = []
    for word in _words(line):
        if word in _SEPARATORS:
            if command:
                yield command
            command = []
        else:
            command.append(word)
    if command:
        yield command


def _compose_command(words: list[str], services: set[str]) -> tuple[list[str], list[str]]:
    """For `docker-compose VERB [options] SERVICE...`: the command `exec` runs inside the
    container, and the services named that compose does not have (or a `logs --since`)."""
    if words[0] == "docker" and words[1:2] != ["compose"]:
        return [], []  # docker itself (`docker logs --since 15m "$(docker-compose ps -q ...)"`)
    verb_at = 2 if words[:2] == ["docker", "compose"] else 1
    if len(words) <= verb_at or words[verb_at] not in _COMPOSE_VERBS:
        return [], []
    verb, rest = words[verb_at], words[verb_at + 1 :]
    if verb == "logs" and any(word.startswith("--since") for word in rest):
        return [], [f"{NO_SINCE}: {' '.join(words)}"]
    index = 0
    while index < len(rest) and rest[index].startswith("-"):
        index += 2 if rest[index] in _VALUE_OPTIONS else 1
    named, inner = (
        (rest[index : index + 1], rest[index + 1 :]) if verb == "exec" else (rest[index:], [])
    )
    problems = [
        f"no compose service {name!r}: {' '.join(words)}" for name in named if name not in services
    ]
    if inner[:1] == ["kill"]:
        # The image has no kill binary; the shell's builtin works: `sh -c 'kill -TERM 1'`.
        problems.append(f"no kill in the image (use sh -c 'kill ...'): {' '.join(words)}")
    return inner, problems


def shell_commands(markdown: str, services: set[str]) -> Iterator[tuple[list[str], list[str]]]:
    """(command, problems) for each simple command of a runbook, the command inside
    `docker-compose exec` taken for the command itself, and each `$(...)` a command too."""
    for whole in code_of(markdown):
        inner = _SUBSTITUTION.findall(whole)
        for line in [*inner, _SUBSTITUTION.sub("SUBSTITUTED", whole)]:
            for words in _commands(line):
                missing: list[str] = []
                if words[0] in ("docker-compose", "docker"):
                    words, missing = _compose_command(words, services)
                yield words, missing


def problems_in(
    markdown: str, compose_services: set[str], metrics: set[str], alert_names: set[str]
) -> list[str]:
    """What a runbook names that does not exist (empty when everything does)."""
    found: list[str] = []
    programs = by_name()
    for words, missing in shell_commands(markdown, compose_services):
        found += missing
        if words:
            if Path(words[0]).name == "domos":
                argv = words[1:]
                if not argv or argv[0] not in COMMAND_OWNERS:
                    found.append(f"unknown command: {' '.join(words)}")
                    continue
                stderr = io.StringIO()
                try:
                    with contextlib.redirect_stderr(stderr):
                        build_parser(argv).parse_args(argv)
                except SystemExit:
                    found.append(f"does not parse: {' '.join(words)}: {stderr.getvalue()}")
            elif words[0] != "sh" and any("$BACKUP_DIR" in word for word in words):
                # Set in the role containers only (the backups are in a named volume).
                found.append(f"$BACKUP_DIR outside the container: {' '.join(words)}")
            elif words[0] == "curl" and any(_FIXED_PORT.search(word) for word in words):
                found.append(
                    f"a published port written out (.env may change it): {' '.join(words)}"
                )
            elif words[0] == "supervisorctl":
                for word in words[1:]:
                    match = _SUPERVISOR_TARGET.match(word)
                    if not match:
                        continue
                    role, program = match.groups()
                    if program == "*":
                        known = any(p.role == role for p in programs.values())
                    else:
                        known = program in programs and programs[program].role == role
                    if not known:
                        found.append(f"no supervisord program {word}")
    # SQL given to psql names PostgreSQL's own views and functions (pg_locks, ...), not metrics.
    outside_sql = "\n".join(line for line in markdown.splitlines() if "psql " not in line)
    for name in sorted(set(_METRIC.findall(outside_sql))):
        if name not in metrics and name not in _POSTGRES_TOOLS:
            found.append(f"no metric {name}")
    for name in sorted(set(_ALERT.findall(markdown))):
        if name not in alert_names:
            found.append(f"no alert {name}")
    return found


def test_every_alert_links_its_runbook_and_every_runbook_an_alert(
    repo: Path, alerts: dict[str, dict[str, Any]], runbooks: dict[str, str]
):
    assert len(alerts) >= 22
    for name, rule in alerts.items():
        url = rule.get("annotations", {}).get("runbook_url")
        assert url == f"docs/runbooks/{name}.md", name
        assert (repo / url).is_file(), f"{name}: no runbook {url}"
    assert set(runbooks) == set(alerts), "runbooks without an alert"
    index = (repo / "docs/runbooks/README.md").read_text()
    for name in alerts:
        assert f"]({name}.md)" in index, f"docs/runbooks/README.md: {name} not listed"


def test_every_runbook_has_its_sections(runbooks: dict[str, str]):
    for name, text in runbooks.items():
        assert text.startswith(f"# {name}\n"), name
        headings = re.findall(r"^## (.+)$", text, re.M)
        assert headings == list(SECTIONS), (name, headings)
        confirm = text.split("## Confirm", 1)[1].split("## Fix", 1)[0]
        assert "```" in confirm, f"{name}: Confirm shows no command"


def test_runbooks_name_only_commands_metrics_and_alerts_that_exist(
    repo: Path,
    runbooks: dict[str, str],
    compose: dict[str, Any],
    defined: set[str],
    alerts: dict[str, dict[str, Any]],
):
    services = set(compose["services"])
    metrics = defined | EXTERNAL_METRICS
    domos_commands = 0
    index = (repo / "docs/runbooks/README.md").read_text()
    assert problems_in(index, services, metrics, set(alerts)) == [], "README.md"
    for name, text in runbooks.items():
        assert problems_in(text, services, metrics, set(alerts)) == [], name
        domos_commands += sum(
            1
            for words, _ in shell_commands(text, services)
            if words and Path(words[0]).name == "domos"
        )
    assert domos_commands >= 10  # the parser check above ran on real commands


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("domos monitr tsmonitor", "unknown command"),
        ("docker-compose exec monitors domos monitor --bogus", "does not parse"),
        ("docker-compose exec monitors domos db migrate", "does not parse"),
        ("docker-compose exec monitor domos health", "no compose service 'monitor'"),
        ("docker-compose logs --tail=50 monitors workers", "no compose service 'workers'"),
        ("supervisorctl -c /app/supervisord.conf restart monitors:api", "no supervisord program"),
        ("supervisorctl restart workers:*", "no supervisord program"),
        ("grep domos_monitor_ticks_sum metrics.txt", "no metric"),
        ("see DomosMonitorDead", "no alert"),
        ("docker-compose logs --since=15m monitors | grep tick_failed", "no `logs --since`"),
        ("docker compose logs --since 15m monitors", "no `logs --since`"),
        ("docker-compose exec monitors kill -USR1 1", "no kill in the image"),
        ("curl -s http://127.0.0.1:9090/api/v1/alerts", "a published port written out"),
        ('ls -l "$BACKUP_DIR"/sqlite/*/ | tail', "$BACKUP_DIR outside the container"),
        ('docker logs --since 15m "$(docker-compose ps -q monitor)" 2>&1', "no compose service"),
    ],
)
def test_the_check_catches_what_does_not_exist(
    line: str, problem: str, compose: dict[str, Any], defined: set[str]
):
    markdown = f"text\n\n```sh\n{line}\n```\n"
    found = problems_in(markdown, set(compose["services"]), defined, {"DomosTargetDown"})
    assert len(found) == 1, found
    assert problem in found[0]


def test_the_check_passes_real_commands(compose: dict[str, Any], defined: set[str]):
    markdown = (
        "Run `domos health --role monitors` or:\n\n```sh\n"
        "docker-compose exec -e LOG_LEVEL=debug monitors domos monitor tsmonitor --once\n"
        "docker-compose exec monitors supervisorctl -c /app/supervisord.conf status monitors:*\n"
        "psql -U domos -d domos -c 'SELECT 1' && .venv/bin/domos db status\n"
        'docker logs --since 15m "$(docker-compose ps -q monitors)" 2>&1 | grep tick_failed\n'
        "docker-compose logs --tail=200 monitors\n"
        "docker-compose exec monitors sh -c 'kill -TERM 1'\n"
        'curl -s "http://$(docker-compose port prometheus 9090)/api/v1/alerts"\n'
        "```\nWatch domos_monitor_ticks_total and DomosTargetDown.\n"
    )
    assert problems_in(markdown, set(compose["services"]), defined, {"DomosTargetDown"}) == []


_PROMQL = re.compile(r"--data-urlencode '?query=(.*?)'?$")


def promql_queries(runbooks: dict[str, str]) -> list[tuple[str, str]]:
    """(runbook, PromQL) for each `curl ... --data-urlencode 'query=...'` of the runbooks."""
    found = []
    for name, text in runbooks.items():
        for line in code_of(text):
            match = _PROMQL.search(line)
            if match:
                found.append((name, match.group(1)))
    return found


def test_every_runbook_query_is_valid_promql(runbooks: dict[str, str], tmp_path: Path):
    """Each query an operator pastes parses, as promtool parses a rule's expression."""
    queries = promql_queries(runbooks)
    assert len(queries) >= 20
    rules = [{"record": f"runbook:query_{i}", "expr": q} for i, (_, q) in enumerate(queries)]
    (tmp_path / "queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "runbooks", "rules": rules}]})
    )
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install the Debian package prometheus"
    result = subprocess.run(
        [promtool, "check", "rules", "queries.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, (queries, result.stdout + result.stderr)


def test_the_cutover_runbook_names_only_what_exists(
    repo: Path, compose: dict[str, Any], defined: set[str], alerts: dict[str, dict[str, Any]]
):
    """docs/cutover.md's commands too: its freeze step named programs no role has (botapi,
    backup_schedule), and `python services/web/manage.py`, which does not exist. (Its prose
    names tools such as pg_dump, which the metric check would take for metrics.)"""
    text = (repo / "docs/cutover.md").read_text()
    found = problems_in(text, set(compose["services"]), defined | EXTERNAL_METRICS, set(alerts))
    commands = [p for p in found if not p.startswith(("no metric", "unknown command: domos …"))]
    assert commands == []
    assert "manage.py" not in text
    targets = [w for words, _ in shell_commands(text, set(compose["services"])) for w in words]
    assert {"bot:*", "api:*", "web:*", "monitors:*"} <= set(targets)


_COMPOSE_LOGS_SINCE = re.compile(r"docker(?:-compose| compose) logs\b[^\n`|;&]*--since")


def test_no_doc_asks_compose_for_logs_since(repo: Path):
    """Every runbook and doc: `docker-compose logs --since` prints usage and exits 0 on
    docker-compose v1, so a grep behind it finds nothing. `docker logs --since` works on both."""
    docs = [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]
    found = [
        f"{path.relative_to(repo)}: {match.group(0)}"
        for path in docs
        for match in _COMPOSE_LOGS_SINCE.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == [], NO_SINCE
    assert _COMPOSE_LOGS_SINCE.search("docker-compose logs --since=12h monitors | grep x")
    assert _COMPOSE_LOGS_SINCE.search("docker compose logs -f --since 1h bot")
    assert not _COMPOSE_LOGS_SINCE.search('docker logs --since 1h "$(docker-compose ps -q bot)"')
