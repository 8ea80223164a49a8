"""The compose stack of the container acceptance tests: the real image, docker-compose v1.

`ComposeStack` runs `docker-compose` with its own project name, a generated env file and free
published ports, so it never meets a developer's own stack or the fixed ports of `domos run`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.acceptance.stack.stack import free_port

REPO = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO / "docker-compose.yml"
#: Health checks every 2 s instead of the image's 30 s: the same `domos health`, answered sooner.
TEST_OVERRIDE = Path(__file__).with_name("compose.test.yml")
#: Grafana has no Debian package, so no stand-in: its provisioning is validated statically
#: (tests/unit/infra/test_dashboards.py).
LEFT_OUT = frozenset({"grafana"})
T = TypeVar("T")


def engine_answers() -> bool:
    if shutil.which("docker") is None or shutil.which("docker-compose") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


def require_engine() -> None:
    """Skip without an engine on a developer's machine; never in CI (.ci/run starts one)."""
    if engine_answers():
        return
    message = "no Docker engine answers (docker info); .ci/run starts one"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


#: The older version test_compose_upgrade.py upgrades from: main/0001-0007, before fd2811b (its
#: `db upgrade` calls a schema ahead of it "up to date"), the commit tests/acceptance/upgrade
#: rehearses on the host. Its image is built after the role image (build_old_image.sh).
OLD_COMMIT = "7d57295"
OLD_IMAGE = f"domos-upgrade-old:{OLD_COMMIT}"

#: Where this test session's image build writes; set by `start_image_build` in the process that
#: starts it and inherited by pytest-xdist's workers, so the build runs once per session.
BUILD_DIR_VARIABLE = "DOMOS_TEST_IMAGE_BUILD_DIR"
ARTIFACTS = REPO / "var" / "test-artifacts"


#: The build started by this process: held, so it is not collected (and warned of) while running.
_builds: list[subprocess.Popen[bytes]] = []


def _build_dir() -> Path | None:
    value = os.environ.get(BUILD_DIR_VARIABLE)
    return Path(value) if value else None


def start_image_build() -> Path:
    """docker/build.sh in the background, below the tests' priority (they are timed), once per
    session: its log, its exit code (`exit`, when done) and start time (`started`) in a directory
    named by BUILD_DIR_VARIABLE."""
    existing = _build_dir()
    if existing is not None and (existing / "started").exists():
        return existing
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix="image-build-", dir=ARTIFACTS))
    (build_dir / "started").write_text(f"{time.time()}\n")
    # Then the older version's image of test_compose_upgrade.py (its own log and exit code),
    # so it is ready too when the container tests start.
    script = (
        'nice -n 10 "$0" > "$1/log" 2>&1; echo $? > "$1/exit.tmp" && mv "$1/exit.tmp" "$1/exit";'
        ' nice -n 10 "$2" "$3" "$4" > "$1/old-log" 2>&1;'
        ' echo $? > "$1/old-exit.tmp" && mv "$1/old-exit.tmp" "$1/old-exit"'
    )
    build_old = Path(__file__).with_name("build_old_image.sh")
    _builds.append(
        subprocess.Popen(
            [
                "bash",
                "-c",
                script,
                str(REPO / "docker" / "build.sh"),
                str(build_dir),
                str(build_old),
                OLD_COMMIT,
                OLD_IMAGE,
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )
    os.environ[BUILD_DIR_VARIABLE] = str(build_dir)
    return build_dir


def reap_image_build() -> None:
    """Stops (if still running) and waits for the build this process started: never waited for,
    it would outlive the session or be reported as a leaked subprocess at exit."""
    while _builds:
        process = _builds.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def wait_for_images(timeout_s: float = 480) -> float:
    """Waits for the session's build (starting it if no one did); seconds it has taken."""
    build_dir = start_image_build()
    started = float((build_dir / "started").read_text())
    exit_file = build_dir / "exit"
    while not exit_file.exists():
        if time.time() - started > timeout_s:
            pytest.fail(f"the image build took over {timeout_s} s; log: {build_dir / 'log'}")
        time.sleep(1)
    code = int(exit_file.read_text())
    if code != 0:
        log = (build_dir / "log").read_text()[-3000:]
        pytest.fail(f"docker/build.sh exited {code}:\n{log}")
    return time.time() - started


def history_lacks(commit: str) -> bool:
    """A shallow clone without `commit`: its tree cannot be archived."""
    shallow = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
        check=False,
    )
    present = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    return shallow.stdout.strip() == "true" and present.returncode != 0


def wait_for_old_image(timeout_s: float = 300) -> None:
    """Waits for the session's build of OLD_IMAGE, which follows the role image's (call
    wait_for_images first)."""
    if history_lacks(OLD_COMMIT):
        # Only a clone made with --depth lacks it; a full clone (this project's checkouts and
        # CI's) always runs the rehearsal, and a failed build there fails below.
        pytest.skip(f"a shallow clone without {OLD_COMMIT}: run `git fetch --unshallow`")
    build_dir = start_image_build()
    exit_file = build_dir / "old-exit"
    deadline = time.monotonic() + timeout_s
    while not exit_file.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{OLD_IMAGE} took over {timeout_s} s; log: {build_dir / 'old-log'}")
        time.sleep(1)
    log = (build_dir / "old-log").read_text()
    if int(exit_file.read_text()) != 0:
        pytest.fail(f"build_old_image.sh {OLD_COMMIT} failed:\n{log[-3000:]}")
    print(log.strip().splitlines()[-1])


def wait_for(
    predicate: Callable[[], T | None], timeout_s: float, what: str, step_s: float = 1
) -> T:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, subprocess.SubprocessError, KeyError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(step_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}; last: {last!r}")


@dataclass
class ComposeStack:
    project: str
    env_file: Path
    ports: dict[str, int]
    secrets: dict[str, str]
    #: The compose file `compose` runs: the repository's, or an older version's (its relative
    #: paths still resolve in the repository, as in an operator's one checkout).
    compose_file: Path = COMPOSE_FILE

    @classmethod
    def create(cls, work: Path, project_prefix: str = "domosaccept") -> ComposeStack:
        ports = {
            name: free_port()
            for name in (
                "POSTGRES",
                "API",
                "WEB",
                "BOTAPI",
                "SANDBOX",
                "PROMETHEUS",
                "ALERTMANAGER",
            )
        }
        secrets = {
            "POSTGRES_PASSWORD": "stack-pg-password",
            "TELEGRAM_BOT_TOKEN": "100000001:container-acceptance-sandbox-token",
            "YOOKASSA_SHOP_ID": "100001",
            "YOOKASSA_SECRET_KEY": "test_container_acceptance_secret",
            "API_ADMIN_KEY": "container-acceptance-admin-key",
            "API_TOKEN_HASH_KEY": "container-acceptance-hash-key",
            "DJANGO_SECRET_KEY": "container-acceptance-django-secret-0123456789",
            "BOTAPI_SEND_TOKEN": "container-acceptance-send-token",
            "GRAFANA_ADMIN_PASSWORD": "unused",
        }
        values = {
            **secrets,
            # The sandbox stands in for Telegram and YooKassa, inside the stack's network.
            "TELEGRAM_API_URL": "http://sandbox:8081",
            "YOOKASSA_API_URL": "http://sandbox:8081",
            # YooKassa's ranges (compose's default) and the stack's own network, where the
            # sandbox posts its notifications from.
            "BOTAPI_WEBHOOK_ALLOWLIST": "yookassa,172.16.0.0/12,192.168.0.0/16",
            "ALERT_CHAT_ID": "-1000000000001",
            **{f"{name}_PUBLISHED_PORT": str(port) for name, port in ports.items()},
        }
        env_file = work / "stack.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        project = f"{project_prefix}{os.getpid()}"
        return cls(project, env_file, ports, secrets)

    # --- docker-compose -----------------------------------------------------------------------
    def compose(
        self, *args: str, timeout_s: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "docker-compose",
            "--project-name",
            self.project,
            "--env-file",
            str(self.env_file),
            "--project-directory",
            str(REPO),
            "--file",
            str(self.compose_file),
            "--file",
            str(TEST_OVERRIDE),
            "--profile",
            "sandbox",
            *args,
        ]
        done = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and done.returncode != 0:
            pytest.fail(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def services(self) -> list[str]:
        listed = self.compose("config", "--services").stdout.split()
        return [name for name in listed if name not in LEFT_OUT]

    def long_running(self) -> list[str]:
        return [name for name in self.services() if name != "migrate"]

    def exec(self, service: str, *argv: str, timeout_s: float = 60) -> str:
        return self.compose("exec", "-T", service, *argv, timeout_s=timeout_s).stdout

    def ctl(self, service: str, *argv: str) -> str:
        argv = ("supervisorctl", "-c", "/app/supervisord.conf", *argv)
        return self.compose("exec", "-T", service, *argv, check=False).stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).stdout.strip()

    def inspect(self, service: str) -> dict[str, Any]:
        out = subprocess.run(
            ["docker", "inspect", self.container(service)],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return dict(json.loads(out)[0])

    def health(self, service: str) -> str:
        state = self.inspect(service)["State"]
        return str(state.get("Health", {}).get("Status", state["Status"]))

    def all_healthy(self, services: Iterable[str]) -> dict[str, str] | None:
        states = {name: self.health(name) for name in services}
        return states if all(state == "healthy" for state in states.values()) else None

    def wait_healthy(self, services: Iterable[str], timeout_s: float = 180) -> dict[str, str]:
        names = list(services)
        return wait_for(lambda: self.all_healthy(names), timeout_s, f"{names} healthy", 1)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def database_url(self) -> str:
        password = self.secrets["POSTGRES_PASSWORD"]
        return f"postgresql://domos:{password}@127.0.0.1:{self.ports['POSTGRES']}/domos"

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "90", check=False)
