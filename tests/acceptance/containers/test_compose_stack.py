"""Production for real: the image built here, `docker-compose --profile sandbox up` of the whole
file but grafana, driven the way an operator and the members would drive it.

One stack serves the module (building and starting it is the expensive part); the tests run in
file order: what the stack is, what it does (the demo through the containers), how it heals
(kill -9, FATAL, a PostgreSQL restart), and how it stops and starts again with its data. Base
images are pulled where a registry answers, else built from Debian packages
(docker/base-images/build.sh); the first build takes about three minutes, later ones reuse the
layer cache.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import yaml

from runtime.supervision.demo import DEMO_MEMBERS, Demo, ensure_tariff
from runtime.supervision.programs import LISTENER_NAME, by_name, roles
from runtime.telegram_proof import mini_app_authorization
from tests.acceptance.containers.compose_stack import (
    REPO,
    ComposeStack,
    require_engine,
    wait_for,
    wait_for_images,
)

pytestmark = [pytest.mark.slow, pytest.mark.containers, pytest.mark.timeout(600)]

#: Exit codes of a clean stop of images that are not ours: postgres_exporter (0.11, upstream and
#: Debian's build alike) answers SIGTERM by exiting 2, at once.
THIRD_PARTY_STOP_CODES = {"postgres-exporter": 2}
ROLE_SERVICES = ("api", "web", "bot", "monitors", "sandbox")
SUBSCRIBER = DEMO_MEMBERS[0][0]
#: A program of a role with several, driven to FATAL.
FATAL_SERVICE, FATAL_PROGRAM = "monitors", "eventsmonitor"

#: Runs inside a container: kills the program each time supervisord starts it, before its
#: startsecs pass, until supervisord gives up on it (FATAL) or is gone (the listener shut it
#: down). Through supervisorctl's own client options: the socket and credentials of the config.
KILL_UNTIL_FATAL = """
import os, signal, sys, time, xmlrpc.client
from supervisor.options import ClientOptions
options = ClientOptions()
options.realize(args=["-c", "/app/supervisord.conf"])
rpc = options.getServerProxy()
name, killed, deadline = sys.argv[1], set(), time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        info = rpc.supervisor.getProcessInfo(name)
    except (OSError, xmlrpc.client.Fault):
        print("supervisord gone after", len(killed), "kills"); break
    if info["statename"] == "FATAL":
        print("FATAL after", len(killed), "kills")
    elif info["pid"] and info["pid"] not in killed:
        os.kill(info["pid"], signal.SIGKILL); killed.add(info["pid"])
    time.sleep(0.02)
"""


def qualified(name: str) -> str:
    program = by_name()[name]
    return name if program.role == name else f"{program.role}:{name}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    require_engine()
    print(f"images built in {wait_for_images():.0f} s")
    compose = ComposeStack.create(tmp_path_factory.mktemp("compose"))
    started = time.monotonic()
    try:
        compose.compose("up", "-d", "--no-build", *compose.services(), timeout_s=300)
        compose.wait_healthy((*ROLE_SERVICES, "postgres"))
        print(f"stack healthy {time.monotonic() - started:.0f} s after up")
        yield compose
    finally:
        logs = compose.compose("logs", "--no-color", "--tail", "200", check=False).stdout
        artifacts = REPO / "var" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "compose-stack.log").write_text(logs)
        compose.down()


def sent_texts(stack: ComposeStack, chat_id: int) -> list[str]:
    answer = httpx.get(
        f"{stack.url('SANDBOX')}/_sandbox/telegram/sent", params={"chat_id": chat_id}, timeout=10
    )
    answer.raise_for_status()
    return [message.get("text", "") for message in answer.json()]


def counts(stack: ComposeStack) -> dict[str, int]:
    found: dict[str, int] = {}
    with psycopg.connect(stack.database_url()) as conn:
        for table in ("users", "payments", "subscriptions", "outbox", "provider_events"):
            row = conn.execute(f"SELECT count(*) FROM main.{table}").fetchone()
            assert row is not None
            found[table] = int(row[0])
    return found


def member_status(stack: ComposeStack, telegram_id: int) -> httpx.Response:
    """The API's answer to the member's own Mini App (initData signed for the stack's bot)."""
    proof = mini_app_authorization(stack.secrets["TELEGRAM_BOT_TOKEN"], telegram_id)
    return httpx.get(
        f"{stack.url('API')}/v1/subscriptions/{telegram_id}",
        headers={"Authorization": proof},
        timeout=10,
    )


def demo(stack: ComposeStack) -> Demo:
    return Demo(
        stack.url("SANDBOX"),
        stack.url("API"),
        stack.url("BOTAPI"),
        timeout_s=60,
        bot_token=stack.secrets["TELEGRAM_BOT_TOKEN"],
    )


def test_every_container_healthy_and_the_migrations_ran(stack: ComposeStack) -> None:
    assert set(ROLE_SERVICES) <= set(stack.long_running())
    for service in stack.long_running():
        state = stack.inspect(service)["State"]
        assert state["Running"], service
        if "Health" in state:  # prometheus and the exporters report no health of their own
            wait_for(lambda s=service: stack.health(s) == "healthy", 60, f"{service} healthy")
    migrate = stack.inspect("migrate")["State"]
    assert (migrate["Status"], migrate["ExitCode"]) == ("exited", 0)


@pytest.mark.parametrize("role", ROLE_SERVICES)
def test_supervisorctl_lists_exactly_the_roles_programs_running(
    stack: ComposeStack, role: str
) -> None:
    lines = [line.split() for line in stack.ctl(role, "status").splitlines() if line.strip()]
    states = {fields[0]: fields[1] for fields in lines}
    expected = {qualified(p.name) for p in roles()[role]} | {LISTENER_NAME}
    assert set(states) == expected
    assert set(states.values()) == {"RUNNING"}, states


def test_a_clean_start_logs_no_known_defect(stack: ComposeStack) -> None:
    """What the first real run of the image printed: gunicorn's control socket under a
    read-only $HOME, supervisord's lines twice, the event listener's buffer overflowing."""
    for service in ROLE_SERVICES:
        logs = stack.compose("logs", "--no-color", service).stdout
        assert "Permission denied" not in logs, service
        assert "event buffer overflowed" not in logs, service
        started = [line for line in logs.splitlines() if "supervisord started with pid" in line]
        assert len(started) == 1, (service, started)


def test_the_role_image_has_no_migration_extra_and_says_where_it_is(stack: ComposeStack) -> None:
    done = stack.compose("exec", "-T", "api", "domos", "migrate", "verify", check=False)
    assert done.returncode == 2
    assert "domos-migrate image" in done.stderr


def test_a_member_registers_pays_and_gets_the_receipt_through_the_containers(
    stack: ComposeStack,
) -> None:
    scenario = demo(stack)
    try:
        scenario.wait_until_up()
        tariff = ensure_tariff({"DB_TYPE": "postgres", "DATABASE_URL": stack.database_url()})
        scenario.start_members()  # /start to the bot container, through the sandbox
        # The API creates the payment at the sandbox's YooKassa; the sandbox posts its webhook to
        # botapi in the bot container; payment_monitor applies it; notifymonitor sends the receipt.
        assert scenario.subscribe(SUBSCRIBER, tariff) is True
    finally:
        scenario.close()
    receipts = wait_for(
        lambda: [t for t in sent_texts(stack, SUBSCRIBER) if t.startswith("Оплата получена")],
        60,
        "the receipt in the member's chat",
    )
    assert len(receipts) == 1
    with psycopg.connect(stack.database_url()) as conn:
        rows = conn.execute(
            "SELECT p.status, s.status FROM main.payments p JOIN main.users u ON u.id = p.user_id"
            " JOIN main.subscriptions s ON s.user_id = u.id WHERE u.telegram_id = %s",
            (SUBSCRIBER,),
        ).fetchall()
    assert rows == [("succeeded", "active")]


def test_the_webhook_believes_the_host_proxy_and_hears_yookassa_only(stack: ComposeStack) -> None:
    """Through the published port a request arrives from the bridge gateway, a trusted proxy:
    the caller is the address the host's proxy appended to X-Forwarded-For, and only YooKassa's
    ranges (plus, in this stack, its own network where the sandbox posts from) may notify."""
    url = stack.url("BOTAPI") + "/yookassa/webhook"
    body = {"type": "notification", "event": "payment.succeeded", "object": {"id": "not-ours"}}
    stranger = httpx.post(url, json=body, headers={"X-Forwarded-For": "203.0.113.9"}, timeout=10)
    assert stranger.status_code == 403, stranger.text
    # A caller cannot pose as YooKassa: the proxy appends the address it saw after theirs.
    posing = httpx.post(
        url, json=body, headers={"X-Forwarded-For": "185.71.76.5, 203.0.113.9"}, timeout=10
    )
    assert posing.status_code == 403, posing.text
    yookassa = httpx.post(url, json=body, headers={"X-Forwarded-For": "185.71.76.5"}, timeout=10)
    assert (yookassa.status_code, yookassa.json()["status"]) == (200, "ignored"), yookassa.text


def test_prometheus_scrapes_every_target_and_loaded_the_rules(stack: ComposeStack) -> None:
    prometheus = stack.url("PROMETHEUS")

    down: list[str] = []

    def targets_up() -> list[dict[str, object]] | None:
        active = httpx.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]
        targets = active["activeTargets"]
        down[:] = [f"{t['scrapeUrl']}: {t['lastError']}" for t in targets if t["health"] != "up"]
        return targets if targets and not down else None

    targets = wait_for(targets_up, 90, f"every Prometheus target up (down: {down})", step_s=2)
    jobs = {str(t["labels"]["job"]) for t in targets}  # type: ignore[index]
    configured = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    assert jobs == {job["job_name"] for job in configured["scrape_configs"]}
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    declared = yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())
    names = {r.get("alert") or r.get("record") for g in declared["groups"] for r in g["rules"]}
    assert loaded == names


def test_kill_9_inside_a_container_is_running_again(stack: ComposeStack) -> None:
    name = qualified("notifymonitor")
    old_pid = int(stack.ctl("monitors", "pid", name).strip())
    stack.exec("monitors", "sh", "-c", f"kill -9 {old_pid}")  # no procps in a slim image

    def running_again() -> bool:
        fields = stack.ctl("monitors", "status", name).split()
        return fields[1] == "RUNNING" and int(stack.ctl("monitors", "pid", name)) != old_pid

    wait_for(running_again, 30, f"{name} RUNNING again", step_s=0.5)


def test_a_program_driven_to_fatal_restarts_its_container_whole(stack: ComposeStack) -> None:
    before = stack.inspect(FATAL_SERVICE)
    done = stack.compose(
        "exec",
        "-T",
        FATAL_SERVICE,
        "python",
        "-c",
        KILL_UNTIL_FATAL,
        qualified(FATAL_PROGRAM),
        timeout_s=120,
        check=False,
    )
    print(done.stdout, done.stderr)

    def restarted() -> bool:
        after = stack.inspect(FATAL_SERVICE)
        return after["RestartCount"] > before["RestartCount"] or (
            after["State"]["StartedAt"] != before["State"]["StartedAt"]
        )

    wait_for(restarted, 60, f"{FATAL_SERVICE} restarted by its restart policy")
    stack.wait_healthy([FATAL_SERVICE], timeout_s=120)
    states = {
        line.split()[0]: line.split()[1]
        for line in stack.ctl(FATAL_SERVICE, "status").splitlines()
        if line.strip()
    }
    assert set(states.values()) == {"RUNNING"}, states


def test_postgres_restart_heals_and_nothing_is_lost_or_doubled(stack: ComposeStack) -> None:
    before = counts(stack)
    receipts_before = sent_texts(stack, SUBSCRIBER)
    stack.compose("restart", "postgres", timeout_s=120)
    stack.wait_healthy(("postgres", *ROLE_SERVICES), timeout_s=120)
    # The stack serves again: a new member registers through the bot after the restart.
    newcomer = 700000099
    sandbox = httpx.Client(base_url=f"{stack.url('SANDBOX')}/_sandbox", timeout=10)
    with sandbox:
        sandbox.post("/telegram/users", json={"user_id": newcomer, "first_name": "Gleb"})
        sandbox.post("/telegram/messages", json={"user_id": newcomer, "text": "/start"})
    wait_for(
        lambda: member_status(stack, newcomer).status_code == 200,
        60,
        "the bot to register a member after the restart",
    )
    after = counts(stack)
    assert after["users"] == before["users"] + 1
    assert {k: after[k] for k in ("payments", "subscriptions", "provider_events")} == {
        k: before[k] for k in ("payments", "subscriptions", "provider_events")
    }
    assert sent_texts(stack, SUBSCRIBER) == receipts_before


def test_down_exits_zero_in_its_grace_and_up_keeps_the_data(stack: ComposeStack) -> None:
    before = counts(stack)
    started = time.monotonic()
    stack.compose("stop", timeout_s=240)
    print(f"stopped in {time.monotonic() - started:.1f} s")
    # Past its stop_grace_period Docker sends SIGKILL (exit 137): 0 means it stopped in time.
    exits = {s: stack.inspect(s)["State"] for s in stack.long_running()}
    expected = {s: ("exited", THIRD_PARTY_STOP_CODES.get(s, 0)) for s in exits}
    assert {s: (st["Status"], st["ExitCode"]) for s, st in exits.items()} == expected
    stack.compose("down", "--timeout", "90")
    stack.compose("up", "-d", "--no-build", *stack.services(), timeout_s=300)
    stack.wait_healthy((*ROLE_SERVICES, "postgres"))
    assert counts(stack) == before
    # "healthy" now includes the services' ports (domos health), but the published port goes
    # through Docker's proxy as well: an answer is waited for, as after a restart.
    answer = wait_for(lambda: member_status(stack, SUBSCRIBER), 60, "the API answering")
    assert answer.status_code == 200
    assert answer.json()["is_active"] is True
