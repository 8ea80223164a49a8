"""Helpers of the schema gate's process tests: a `domos` program, its metrics, a database
upgraded from an edited copy of runtime/schema."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.db.migrations import DEFAULT_SCHEMA_ROOT, discover

DOMOS = [sys.executable, "-m", "runtime.cli"]
ROOT = Path(__file__).resolve().parents[3]
NEWEST = discover("main")[-1]
NEWEST_LABEL = f"main/{NEWEST.version:04d}_{NEWEST.name}"
NEWER_LABEL = f"main/{NEWEST.version + 1:04d}_from_a_newer_domos"
RECHECK = ["--schema-recheck", "0.2"]


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


class Program:
    """A `domos` subprocess logging JSON lines to a file."""

    def __init__(self, args: list[str], environ: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*DOMOS, *args], cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT
            )

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def wait_event(self, name: str, timeout_s: float = 60) -> dict[str, Any]:
        def seen() -> dict[str, Any] | None:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.text()}"
            found = self.events(name)
            return found[0] if found else None

        return wait_for(seen, timeout_s, f"{name} in {self.log_path.name}")  # type: ignore[no-any-return]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def ticked(port: int) -> bool:
    """A tick succeeded (a tick with nothing to do logs its success at debug level only)."""
    done = metric(port, "domos_monitor_ticks_total", monitor="eventsmonitor", outcome="success")
    return bool(done)


def metric(port: int, name: str, **labels: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None  # not serving yet
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def db(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOMOS, "db", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def upgrade_to(environ: dict[str, str], tmp_path: Path, *, edit: Callable[[Path], None]) -> None:
    """`domos db upgrade` from a copy of runtime/schema changed by `edit`."""
    root = tmp_path / "schema"
    shutil.copytree(DEFAULT_SCHEMA_ROOT, root, ignore=shutil.ignore_patterns("*.md"))
    edit(root)
    done = db(environ, "upgrade", "--schema-root", str(root))
    assert done.returncode == 0, done.stderr


def without_newest(root: Path) -> None:
    (root / "main" / NEWEST.path.name).unlink()


def with_a_newer_one(root: Path) -> None:
    name = NEWER_LABEL.split("/", 1)[1]
    (root / "main" / f"{name}.sql").write_text(
        "CREATE TABLE from_a_newer_domos (id INTEGER PRIMARY KEY);\n"
    )
