"""docs/upgrade.md's Containers section, walked from an operator's terminal.

A compose stack of an older version (OLD_COMMIT, before main/0008 and 0009: its image built from
`git archive` of that commit by its own docker/build.sh, its own compose file) holds members who
paid, a receipt and an event reminder still queued (notifymonitor stopped) and a backup. Then, as
the page says: the new image in `.env`'s DOMOS_IMAGE and `docker-compose up -d`; an image whose
migration fails on the data, and its recovery; and the older images put back over the upgraded
schema. Between the steps: the migrate gate ran before any new program started (and the old
containers kept serving meanwhile), every role's `supervisorctl status`, and the data: each
member's exact period, no payment made or applied again, each queued notification sent once.

Runs after test_compose_stack.py, on its images (one compose project at a time); the older
image is built once per machine and reused by its tag.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from runtime.supervision.demo import DEMO_MEMBERS, Demo, ensure_tariff
from runtime.supervision.programs import LISTENER_NAME
from runtime.telegram_proof import mini_app_authorization
from tests.acceptance.containers.compose_stack import (
    OLD_COMMIT,
    OLD_IMAGE,
    REPO,
    ComposeStack,
    require_engine,
    wait_for,
    wait_for_images,
    wait_for_old_image,
)

pytestmark = [pytest.mark.slow, pytest.mark.containers, pytest.mark.timeout(600)]

NEW_IMAGE = os.environ.get("DOMOS_IMAGE", "domos:latest")
MAIN = sorted(path.stem for path in (REPO / "runtime" / "schema" / "main").glob("*.sql"))
#: main's migrations OLD_COMMIT lacks: 0008 and every later one.
NEW_MAIN = [name for name in MAIN if int(name[:4]) >= 8]
#: The new image plus a migration, after main's last, that meets data it cannot take.
FAILING_IMAGE = "domos-upgrade-failing:test"
FAILING_VERSION = f"{int(MAIN[-1][:4]) + 1:04d}"
FAILING_MIGRATION = f"{FAILING_VERSION}_rehearsal_tariff_floor"
ROLES = ("api", "web", "bot", "monitors")
#: What `up -d` is given: every service the upgrade touches. Prometheus, Alertmanager and the
#: exporter take no part in it (test_compose_stack.py runs them); left out, the two cores go to
#: the programs being upgraded.
SERVICES = ("postgres", "migrate", *ROLES, "sandbox")
ANNA, BORIS = DEMO_MEMBERS[0][0], DEMO_MEMBERS[1][0]


@dataclass
class Operator:
    """The stack, the images and what was seen before the upgrade."""

    stack: ComposeStack
    old_compose: Path
    before: dict[str, Any] = field(default_factory=dict)
    #: outbox ids queued (never sent) under the older version
    queued: list[int] = field(default_factory=list)
    #: the dump of step 1, in the volume `backups`
    backup: str = ""

    def use(self, image: str, compose_file: Path) -> None:
        """What the operator edits: DOMOS_IMAGE in .env, and the checkout's compose file."""
        lines = [
            line
            for line in self.stack.env_file.read_text().splitlines()
            if not line.startswith("DOMOS_IMAGE=")
        ]
        self.stack.env_file.write_text("\n".join([*lines, f"DOMOS_IMAGE={image}"]) + "\n")
        self.stack.compose_file = compose_file


def docker(*argv: str, timeout_s: float = 60) -> str:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, check=True, timeout=timeout_s
    ).stdout


def build_failing_image(work: Path) -> None:
    """The new image with one more main migration: it adds a column, then a floor on tariff
    prices that the demo tariff (990.00) is below."""
    context = work / "failing"
    context.mkdir()
    (context / f"{FAILING_MIGRATION}.sql").write_text(
        "ALTER TABLE tariffs ADD COLUMN rehearsal_note {{text}} NULL;\n"
        "ALTER TABLE tariffs ADD CONSTRAINT tariffs_price_floor CHECK (price_minor >= 100000);\n"
    )
    schema = "/opt/venv/lib/python3.11/site-packages/runtime/schema/main/"
    (context / "Dockerfile").write_text(
        f"FROM {NEW_IMAGE}\nCOPY {FAILING_MIGRATION}.sql {schema}\n"
    )
    subprocess.run(
        ["docker", "build", "--quiet", "-t", FAILING_IMAGE, str(context)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    require_engine()
    print(f"images built in {wait_for_images():.0f} s")
    work = tmp_path_factory.mktemp("upgrade")
    wait_for_old_image()
    build_failing_image(work)
    old_compose = work / "docker-compose.old.yml"
    old_compose.write_text(
        subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:docker-compose.yml"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    stack = ComposeStack.create(work, project_prefix="domosupgrade")
    op = Operator(stack, old_compose)
    try:
        yield op
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "300", check=False).stdout
        artifacts = REPO / "var" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "compose-upgrade.log").write_text(logs)
        stack.down()


# --- what the operator and the members see --------------------------------------------------
def query(stack: ComposeStack, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.database_url()) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def data(stack: ComposeStack) -> dict[str, Any]:
    """What an upgrade must keep exactly: periods, payments, provider events, YooKassa's list."""

    def listed() -> httpx.Response:
        answer = httpx.get(
            f"{stack.url('SANDBOX')}/v3/payments",
            auth=(stack.secrets["YOOKASSA_SHOP_ID"], stack.secrets["YOOKASSA_SECRET_KEY"]),
            timeout=10,
        )
        return answer.raise_for_status()

    # Right after `up -d` the sandbox's container may still be starting with the new image
    # (CI saw "connection reset by peer"): asked until it answers.
    yookassa = wait_for(listed, 120, "the sandbox's YooKassa to list payments")
    return {
        "subscriptions": query(
            stack,
            "SELECT u.telegram_id, s.status, s.current_period_start, s.current_period_end"
            " FROM main.subscriptions s JOIN main.users u ON u.id = s.user_id ORDER BY 1",
        ),
        "payments": query(
            stack,
            "SELECT id, user_id, status, amount_minor, provider_payment_id FROM main.payments"
            " ORDER BY id",
        ),
        "provider_events": query(stack, "SELECT count(*) FROM main.provider_events"),
        "yookassa": sorted((p["id"], p["status"]) for p in yookassa.json()["items"]),
    }


def outbox(stack: ComposeStack) -> dict[int, tuple[str, str, int]]:
    rows = query(stack, "SELECT id, kind, status, attempts FROM main.outbox")
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def sent_texts(stack: ComposeStack, chat_id: int) -> list[str]:
    answer = httpx.get(
        f"{stack.url('SANDBOX')}/_sandbox/telegram/sent", params={"chat_id": chat_id}, timeout=10
    )
    answer.raise_for_status()
    return [message.get("text", "") for message in answer.json()]


def is_active(stack: ComposeStack, telegram_id: int) -> bool:
    proof = mini_app_authorization(stack.secrets["TELEGRAM_BOT_TOKEN"], telegram_id)
    answer = httpx.get(
        f"{stack.url('API')}/v1/subscriptions/{telegram_id}",
        headers={"Authorization": proof},
        timeout=10,
    )
    return answer.status_code == 200 and bool(answer.json()["is_active"])


def containers(stack: ComposeStack) -> dict[str, dict[str, Any]]:
    """`docker inspect` of the project's containers by service, in one call of the engine
    (docker-compose takes a second a call: ps and inspect per service added up to minutes)."""
    ids = docker(
        "ps",
        "-aq",
        "--filter",
        f"label=com.docker.compose.project={stack.project}",
        "--filter",
        "label=com.docker.compose.oneoff=False",
    ).split()
    found = json.loads(docker("inspect", *ids)) if ids else []
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in found}


def image_of(stack: ComposeStack, service: str) -> str:
    return str(containers(stack)[service]["Config"]["Image"])


def images(stack: ComposeStack) -> set[str]:
    found = containers(stack)
    return {str(found[role]["Config"]["Image"]) for role in ROLES}


def wait_healthy(stack: ComposeStack, services: tuple[str, ...] = ROLES) -> None:
    def healthy() -> bool:
        found = containers(stack)
        return all(found[s]["State"].get("Health", {}).get("Status") == "healthy" for s in services)

    wait_for(healthy, 180, f"{services} healthy")


def supervisor_states(stack: ComposeStack, role: str) -> dict[str, str]:
    """`supervisorctl status` in the role's container (docker-compose exec's docker exec)."""
    done = subprocess.run(
        [
            "docker",
            "exec",
            str(containers(stack)[role]["Id"]),
            "supervisorctl",
            "-c",
            "/app/supervisord.conf",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [line.split() for line in done.stdout.splitlines() if line.strip()]
    return {fields[0]: fields[1] for fields in lines}


def assert_every_program_running(stack: ComposeStack) -> None:
    for role in ROLES:
        states = wait_for(
            lambda r=role: (
                (s := supervisor_states(stack, r)) and set(s.values()) == {"RUNNING"} and s
            ),
            60,
            f"every program of {role} RUNNING",
        )
        assert LISTENER_NAME in states, (role, states)
        assert len(states) > 1, (role, states)


def container_events(stack: ComposeStack, since: float) -> list[dict[str, Any]]:
    """The engine's record of the project's containers since `since` (start, kill, die...)."""
    out = docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        "type=container",
        "--filter",
        f"label=com.docker.compose.project={stack.project}",
        "--format",
        "{{json .}}",
    )
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --- the walk ----------------------------------------------------------------------------------
def up(stack: ComposeStack, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return stack.compose("up", "-d", "--no-build", *SERVICES, timeout_s=300, check=check)


def migrate_log(stack: ComposeStack) -> str:
    return stack.compose("logs", "--no-color", "migrate").stdout


#: What the walk below runs or sees, as docs/upgrade.md must tell the operator.
WALKED = (
    "docker-compose exec monitors domos db status",
    "docker-compose exec monitors domos backup postgres",
    "DOMOS_IMAGE=domos:$(git rev-parse --short HEAD) docker/build.sh",
    "docker-compose run --rm migrate domos db status",
    "docker-compose up -d",
    "docker-compose logs migrate",
    "docker-compose exec monitors supervisorctl -c /app/supervisord.conf status",
    "exited with code 2.",
    "docker-compose exec postgres psql -U domos domos",
    "older code (7d57295, say) cannot tell and prints `0 migration(s) applied on postgres;"
    " schema is up to date`",
    "docker-compose stop api web bot monitors",
    "docker-compose run --rm --no-deps monitors domos restore postgres --dump",
)


def test_the_page_tells_what_this_walk_does() -> None:
    """Needs no engine: the page's words for the commands and answers the walk meets."""
    page = " ".join((REPO / "docs" / "upgrade.md").read_text().split())
    assert [words for words in WALKED if words not in page] == []


def test_the_older_version_serves_paying_members(operator: Operator) -> None:
    stack = operator.stack
    operator.use(OLD_IMAGE, operator.old_compose)
    up(stack)
    wait_healthy(stack, (*ROLES, "postgres"))
    assert images(stack) == {OLD_IMAGE}

    scenario = Demo(
        stack.url("SANDBOX"),
        stack.url("API"),
        stack.url("BOTAPI"),
        timeout_s=90,
        bot_token=stack.secrets["TELEGRAM_BOT_TOKEN"],
    )
    try:
        scenario.wait_until_up()
        tariff = ensure_tariff({"DB_TYPE": "postgres", "DATABASE_URL": stack.database_url()})
        scenario.start_members()
        assert scenario.subscribe(ANNA, tariff) is True
        wait_for(
            lambda: any(t.startswith("Оплата получена") for t in sent_texts(stack, ANNA)),
            60,
            "Anna's receipt",
        )
        # Notifications queue up from here on: Anna's event reminder and Boris's receipt.
        stack.ctl("monitors", "stop", "monitors:notifymonitor")
        query(
            stack,
            "WITH e AS (INSERT INTO main.events (title, starts_at, announced_at)"
            " VALUES ('Meetup', now() + interval '3 hours', now()) RETURNING id)"
            " INSERT INTO main.event_registrations (event_id, user_id, registered_at)"
            " SELECT e.id, u.id, now() - interval '2 days' FROM e, main.users u"
            " WHERE u.telegram_id = %s RETURNING id",
            ANNA,
        )
        # eventsmonitor ticks every minute, and at once when it starts.
        stack.ctl("monitors", "restart", "monitors:eventsmonitor")
        assert scenario.subscribe(BORIS, tariff) is True
    finally:
        scenario.close()
    queued = wait_for(
        lambda: (
            (q := {i: row for i, row in outbox(stack).items() if row[1] == "queued"})
            and {row[0] for row in q.values()} >= {"receipt", "event_24h"}
            and q
        ),
        90,
        "Boris's receipt and Anna's event reminder queued",
    )
    operator.queued = sorted(queued)
    assert not any(t.startswith("Оплата получена") for t in sent_texts(stack, BORIS))

    # docs/upgrade.md, Containers, step 1: the schema current, a backup.
    assert stack.compose("exec", "-T", "monitors", "domos", "db", "status").returncode == 0
    backup = stack.compose("exec", "-T", "monitors", "domos", "backup", "postgres")
    operator.backup = backup.stdout.strip().splitlines()[-1]
    assert operator.backup.startswith("/backup/postgres/"), backup.stdout
    operator.before = data(stack)
    assert len(operator.before["payments"]) == 2


def test_up_with_the_new_image_migrates_before_any_new_program_starts(
    operator: Operator,
) -> None:
    stack = operator.stack
    old_ids = {role: containers(stack)[role]["Id"] for role in ROLES}
    operator.use(NEW_IMAGE, REPO / "docker-compose.yml")
    # The new image's view before it runs: its migrations pending.
    pending = stack.compose("run", "--rm", "migrate", "domos", "db", "status", check=False)
    assert pending.returncode == 1, pending.stdout + pending.stderr
    listed = re.findall(r"^main\s+(\d{4})\s+(\w+)\s+pending", pending.stdout, re.M)
    assert ["_".join(m) for m in listed] == NEW_MAIN
    since = time.time() - 1
    started = time.monotonic()
    up(stack)
    print(f"docker-compose up -d (the upgrade): {time.monotonic() - started:.1f} s")

    found = containers(stack)
    migrate = found["migrate"]
    assert (migrate["Config"]["Image"], migrate["State"]["ExitCode"]) == (NEW_IMAGE, 0)
    log = migrate_log(stack)
    assert re.findall(r"applied\s+main\s+(\w+)", log) == NEW_MAIN, log
    assert f"{len(NEW_MAIN)} migration(s) applied on postgres; schema is up to date" in log

    events = container_events(stack, since)

    def at(status: str, service: str, image: str) -> list[int]:
        return [
            int(e["timeNano"])
            for e in events
            if e["status"] == status
            and e["Actor"]["Attributes"].get("com.docker.compose.service") == service
            and e["Actor"]["Attributes"].get("image") == image
            # not `docker-compose run`'s one-off containers (the db status above)
            and e["Actor"]["Attributes"].get("com.docker.compose.oneoff") == "False"
        ]

    (migrate_started,) = at("start", "migrate", NEW_IMAGE)
    (migrate_died,) = at("die", "migrate", NEW_IMAGE)
    print(f"migrate ran {(migrate_died - migrate_started) / 1e9:.1f} s")
    for role in ROLES:
        # The old container served while the migrations ran, and was stopped only after them;
        # the new one started after them: no program ran on a schema before its own.
        assert min(at("kill", role, OLD_IMAGE)) > migrate_died, role
        assert min(at("start", role, NEW_IMAGE)) > migrate_died, role
        assert found[role]["Id"] != old_ids[role]
        assert found[role]["Config"]["Image"] == NEW_IMAGE
    wait_healthy(stack)
    assert_every_program_running(stack)
    assert stack.compose("exec", "-T", "monitors", "domos", "db", "status").returncode == 0


def test_the_upgrade_keeps_periods_and_payments_and_sends_the_queue_once(
    operator: Operator,
) -> None:
    stack = operator.stack
    wait_for(
        lambda: all(outbox(stack)[i][1] == "sent" for i in operator.queued),
        60,
        "the notifications queued before the upgrade sent",
    )
    time.sleep(5)  # more ticks of notifymonitor (every second or so)
    assert data(stack) == operator.before
    for i in operator.queued:
        assert outbox(stack)[i][1:] == ("sent", 1), i
    receipts = [t for t in sent_texts(stack, BORIS) if t.startswith("Оплата получена")]
    assert len(receipts) == 1, receipts
    # Anna's receipt went out before the upgrade (the sandbox forgets sent messages when it
    # restarts): not again. Her reminder, queued, once; main/0009 remembers it was sent.
    assert not any(t.startswith("Оплата получена") for t in sent_texts(stack, ANNA))
    reminders = [t for t in sent_texts(stack, ANNA) if "Meetup" in t]
    assert len(reminders) == 1, reminders
    assert query(stack, "SELECT last_reminder FROM main.event_registrations") == [("24h",)]
    assert [row[0] for row in outbox(stack).values()].count("event_24h") == 1
    assert all(is_active(stack, member) for member in (ANNA, BORIS))
    assert "tick_failed" not in stack.compose("logs", "--no-color", "monitors").stdout


def test_a_migration_failing_on_data_leaves_the_running_version_serving(
    operator: Operator,
) -> None:
    stack = operator.stack
    running = {role: containers(stack)[role]["Id"] for role in ROLES}
    operator.use(FAILING_IMAGE, REPO / "docker-compose.yml")
    failed = up(stack, check=False)
    # What docs/upgrade.md tells the operator to expect and to read.
    assert failed.returncode == 1
    assert "exited with code 2." in failed.stderr, failed.stderr
    migrate = containers(stack)["migrate"]["State"]
    assert (migrate["Status"], migrate["ExitCode"]) == ("exited", 2)
    log = migrate_log(stack)
    assert f"domos db: error: main migration {FAILING_MIGRATION} failed" in log, log
    assert 'check constraint "tariffs_price_floor"' in log
    # The roles were left alone: the same containers, the version that ran, serving.
    assert {role: containers(stack)[role]["Id"] for role in ROLES} == running
    assert images(stack) == {NEW_IMAGE}
    assert all(is_active(stack, member) for member in (ANNA, BORIS))
    assert_every_program_running(stack)
    # Applied whole or not at all: its first statement is not there either.
    status = stack.compose("run", "--rm", "migrate", "domos", "db", "status", check=False)
    assert status.returncode == 1
    assert re.search(
        rf"^main\s+{FAILING_VERSION}\s+rehearsal_tariff_floor\s+pending", status.stdout, re.M
    )
    columns = query(
        stack,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'main' AND table_name = 'tariffs'",
    )
    assert ("rehearsal_note",) not in columns

    # One way back: the running image's tag in .env again; its migrate finds nothing to do.
    operator.use(NEW_IMAGE, REPO / "docker-compose.yml")
    up(stack)
    assert "0 migration(s) applied on postgres; schema is up to date" in migrate_log(stack)
    assert {role: containers(stack)[role]["Id"] for role in ROLES} == running

    # The other: fix the data it names, then `up -d` with the new image again.
    stack.exec(
        "postgres",
        "psql",
        "-U",
        "domos",
        "-d",
        "domos",
        "-c",
        "UPDATE main.tariffs SET price_minor = 100000 WHERE price_minor < 100000",
    )
    operator.use(FAILING_IMAGE, REPO / "docker-compose.yml")
    up(stack)
    migrate = containers(stack)["migrate"]["State"]
    assert (migrate["Status"], migrate["ExitCode"]) == ("exited", 0)
    assert f"applied  main        {FAILING_MIGRATION}" in migrate_log(stack)
    # (the roles' health and programs as after the upgrade above: not waited for again)
    assert images(stack) == {FAILING_IMAGE}
    assert data(stack) == operator.before


def test_the_older_images_run_again_over_the_upgraded_schema(operator: Operator) -> None:
    stack = operator.stack
    operator.use(OLD_IMAGE, operator.old_compose)
    up(stack)
    migrate = containers(stack)["migrate"]
    assert (migrate["Config"]["Image"], migrate["State"]["ExitCode"]) == (OLD_IMAGE, 0)
    # Code before fd2811b cannot tell a schema ahead of it: it says "up to date" (the page
    # says so); `domos db status` of that code lists the newer migrations `missing`.
    log = migrate_log(stack)
    assert "0 migration(s) applied on postgres; schema is up to date" in log, log
    assert images(stack) == {OLD_IMAGE}
    wait_healthy(stack)
    assert_every_program_running(stack)
    status = stack.compose("exec", "-T", "monitors", "domos", "db", "status", check=False)
    assert status.returncode == 1
    missing = re.findall(r"^main\s+(\d{4})\s+(\w+)\s+missing", status.stdout, re.M)
    assert ["_".join(m) for m in missing] == [*NEW_MAIN, FAILING_MIGRATION]
    time.sleep(5)  # ticks of the older monitors over the newer schema
    assert data(stack) == operator.before
    assert all(is_active(stack, member) for member in (ANNA, BORIS))
    logs = stack.compose("logs", "--no-color", *ROLES).stdout
    assert "tick_failed" not in logs
    assert not re.search(r"\[(error|critical)\s*\]|\"level\": \"(error|critical)\"", logs)


def test_the_backup_of_step_1_returns_the_data_too(operator: Operator) -> None:
    """docs/upgrade.md, Rolling back: the roles stopped, the dump restored by a one-off container
    of a role (the migrate service has no /backup), the older images up again."""
    stack = operator.stack
    stack.compose("stop", *ROLES, timeout_s=240)
    restored = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "monitors",
        "domos",
        "restore",
        "postgres",
        "--dump",
        operator.backup,
    )
    assert operator.backup in restored.stdout
    up(stack)
    assert "0 migration(s) applied on postgres; schema is up to date" in migrate_log(stack)
    # The older code's own schema again: nothing missing, nothing pending.
    assert stack.compose("exec", "-T", "monitors", "domos", "db", "status").returncode == 0
    assert data(stack) == operator.before
    # Everything written since the dump is gone, sent marks too: what was queued then is
    # sent again (the page says so).
    wait_for(
        lambda: all(outbox(stack)[i][1] == "sent" for i in operator.queued),
        60,
        "the notifications queued in the dump sent",
    )
    receipts = [t for t in sent_texts(stack, BORIS) if t.startswith("Оплата получена")]
    assert len(receipts) == 1, receipts
