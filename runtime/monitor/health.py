"""The health file: how `domos monitor NAME --check` learns the state of the running monitor.

The runner rewrites `<run dir>/monitor-<name>.json` atomically (write a temporary file, then
`os.replace`) at start, when a tick starts and ends, at most once a second while a long tick
reports progress (`ctx.progress()`), on every standby lock retry and at stop. Why a file and
not a DB table: the check runs in the same container as the monitor (supervisord, Docker
HEALTHCHECK), must answer even when the database is down (that outage then shows as a stale last
success, which is the truth), works identically on SQLite and PostgreSQL, and costs nothing per
tick. Each replica reports its own health, which is what a container health check is about.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

#: waiting_for_schema: the database lacks migrations of the code; nothing runs until applied.
Role = Literal["starting", "waiting_for_schema", "leader", "standby", "stopped"]

DEFAULT_RUN_DIR = "var/run"


@dataclass(frozen=True)
class HealthState:
    monitor: str
    pid: int
    owner: str
    interval_s: float
    role: Role
    started_at: float
    #: Last time the runner wrote the file (any reason).
    heartbeat_at: float
    last_success_at: float | None = None
    last_failure_at: float | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    ticks: int = 0
    #: Set while a tick runs: when it started and when it last reported progress (an item done).
    tick_started_at: float | None = None
    progress_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HealthState:
        data: dict[str, Any] = json.loads(text)
        known = {field: data[field] for field in cls.__dataclass_fields__ if field in data}
        return cls(**known)


@dataclass(frozen=True)
class HealthVerdict:
    healthy: bool
    reason: str


def health_path(run_dir: Path, monitor: str) -> Path:
    return run_dir / f"monitor-{monitor}.json"


def write_health(path: Path, state: HealthState) -> None:
    """Replace the file atomically: a reader sees the old or the new state, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(state.to_json())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_health(path: Path) -> HealthState | None:
    try:
        return HealthState.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # Corrupt or from an incompatible version: treated like no state at all.
        return None


def evaluate_health(state: HealthState | None, *, now: float, max_age_s: float) -> HealthVerdict:
    """Healthy when the last success is younger than `max_age_s`.

    A standby singleton instance is healthy while it keeps retrying the lock (fresh heartbeat):
    it is ready to take over, and the leader's own check covers the ticking. A running instance
    that has not succeeded yet gets the same grace from its start.
    """
    if state is None:
        return HealthVerdict(False, "no health state: the monitor has not run here")
    if state.role == "waiting_for_schema":
        # Not working at all, however young: unhealthy at once, with what to do.
        return HealthVerdict(False, f"waiting for the schema: {state.last_error}")
    if state.role == "standby":
        age = now - state.heartbeat_at
        if age <= max_age_s:
            return HealthVerdict(True, f"standby, lock retried {age:.1f} s ago")
        return HealthVerdict(False, f"standby heartbeat is {age:.1f} s old (> {max_age_s:g} s)")
    if state.tick_started_at is not None and state.role == "leader":
        # A long tick (a backlog drained at Telegram's pace) is healthy while it makes progress;
        # one that hangs is not, however recent the success before it.
        running = now - state.tick_started_at
        quiet = now - (state.progress_at or state.tick_started_at)
        if quiet <= max_age_s:
            return HealthVerdict(
                True, f"tick in flight for {running:.1f} s, progress {quiet:.1f} s ago"
            )
        return HealthVerdict(
            False,
            f"tick in flight for {running:.1f} s with no progress for {quiet:.1f} s "
            f"(> {max_age_s:g} s)",
        )
    if state.last_success_at is not None:
        age = now - state.last_success_at
        if age <= max_age_s:
            return HealthVerdict(True, f"last success {age:.1f} s ago")
        return HealthVerdict(
            False,
            f"last success {age:.1f} s ago (> {max_age_s:g} s), "
            f"{state.consecutive_failures} failures since; last error: {state.last_error}",
        )
    if state.role in ("starting", "leader"):
        age = now - state.started_at
        if age <= max_age_s:
            return HealthVerdict(True, f"started {age:.1f} s ago, no tick finished yet")
    return HealthVerdict(
        False, f"no successful tick yet ({state.role}); last error: {state.last_error}"
    )


class HealthRecorder:
    """Keeps the current state in memory and mirrors every change to the file."""

    def __init__(self, path: Path | None, initial: HealthState) -> None:
        self.path = path
        self.state = initial

    def update(self, **changes: Any) -> None:
        self.state = replace(self.state, **changes)
        if self.path is not None:
            write_health(self.path, self.state)
