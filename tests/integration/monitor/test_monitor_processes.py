"""`domos monitor` as real subprocesses on both backends: singleton, claiming, SIGTERM, --once,
--check and the /metrics endpoint."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# `monitor_env` (a MonitorEnv per backend) comes from conftest.py.
MonitorEnv = Any


def test_two_singleton_instances_only_one_ticks_and_the_standby_takes_over(
    monitor_env: MonitorEnv,
) -> None:
    env = monitor_env
    a, b = env.start("counter", tag="a"), env.start("counter", tag="b")

    def leader_and_standby() -> tuple[Any, Any] | None:
        pids = {row["pid"] for row in env.ticks()}
        for leader, standby in ((a, b), (b, a)):
            if pids == {leader.pid} and "singleton_standby" in standby.events():
                return leader, standby
        assert len(pids) <= 1, f"two instances ticked: {pids}"
        return None

    leader, standby = env.wait_until(leader_and_standby, 30, "one leader and one standby")
    before = len(env.ticks())
    # Both report healthy: the standby by its lock retries (checked by a real `--check`
    # process), the leader by its last success.
    code, output = env.command("counter", "--check", run_dir=standby.run_dir)
    assert code == 0, output
    assert "standby" in output
    verdict = env.check(leader.run_dir)
    assert verdict.healthy, verdict.reason
    # Side by side for a few more ticks: the leader goes on, the standby never ticks.
    env.wait_until(lambda: len(env.ticks()) >= before + 3, 30, "the leader to tick on")
    assert {row["pid"] for row in env.ticks()} == {leader.pid}

    assert leader.terminate() == 0
    env.wait_until(
        lambda: any(row["pid"] == standby.pid for row in env.ticks()), 30, "the standby to lead"
    )
    assert standby.terminate() == 0

    ticks = env.ticks()
    assert {row["pid"] for row in ticks} == {leader.pid, standby.pid}
    # Never both at once: every tick of the first leader ended before the second's began.
    last_of_first = max(row["written_at"] for row in ticks if row["pid"] == leader.pid)
    first_of_second = min(row["started_at"] for row in ticks if row["pid"] == standby.pid)
    assert last_of_first <= first_of_second
    assert "tick_failed" not in leader.events() + standby.events()


def test_two_claiming_instances_never_process_an_item_twice(monitor_env: MonitorEnv) -> None:
    env = monitor_env
    items = 60
    env.db.executemany(
        "INSERT INTO sample_backlog (status) VALUES (?)", [("queued",)] * items, db="main"
    )
    replicas = [env.start("claimer", tag=f"replica-{n}") for n in range(2)]

    def done() -> bool:
        count = env.db.fetchval("SELECT COUNT(*) FROM sample_backlog WHERE status = 'done'")
        return bool(count == items)

    env.wait_until(done, 60, "the backlog to drain")
    for replica in replicas:
        assert replica.terminate() == 0

    processed = env.db.fetchall("SELECT item_id, owner FROM sample_processed")
    assert len(processed) == items
    assert len({row["item_id"] for row in processed}) == items
    by_owner = Counter(row["owner"] for row in processed)
    assert len(by_owner) == 2, f"both replicas should have worked: {by_owner}"


def test_sigterm_during_a_tick_lets_it_finish_and_exits_0(monitor_env: MonitorEnv) -> None:
    env = monitor_env
    markers = env.tmp_path / "markers"
    markers.mkdir()
    process = env.start(
        "counter",
        "--stop-timeout",
        "20",
        SAMPLE_TICK_S="1.5",
        SAMPLE_MARKER_DIR=str(markers),
    )
    env.wait_until(lambda: list(markers.iterdir()), 30, "a tick to start")
    assert env.ticks() == []  # the tick is in flight, its write not done yet
    assert process.terminate() == 0
    assert [row["pid"] for row in env.ticks()] == [process.pid]
    events = process.events()
    assert events.index("monitor_stopping") < events.index("tick_succeeded")
    assert events.index("tick_succeeded") < events.index("monitor_stopped")


def test_sigterm_past_the_stop_deadline_cancels_the_tick_and_exits_1(
    monitor_env: MonitorEnv,
) -> None:
    env = monitor_env
    markers = env.tmp_path / "markers"
    markers.mkdir()
    process = env.start(
        "counter",
        "--stop-timeout",
        "0.3",
        SAMPLE_TICK_S="30",
        SAMPLE_MARKER_DIR=str(markers),
    )
    env.wait_until(lambda: list(markers.iterdir()), 30, "a tick to start")
    began = time.monotonic()
    assert process.terminate() == 1
    assert time.monotonic() - began < 10
    assert env.ticks() == []
    assert "tick_cancelled" in process.events()


def test_once_runs_one_tick_and_check_follows_the_last_success(monitor_env: MonitorEnv) -> None:
    env = monitor_env
    run_dir = env.tmp_path / "run" / "once"
    assert not env.check(run_dir).healthy

    code, output = env.command("counter", "--once", run_dir=run_dir, SAMPLE_INTERVAL_S="5")
    assert code == 0, output
    assert len(env.ticks()) == 1

    # Another process (as supervisord or Docker would run it) sees the success.
    code, output = env.command("counter", "--check", run_dir=run_dir, SAMPLE_INTERVAL_S="5")
    assert code == 0, output
    assert "counter: healthy: last success" in output
    # The same state is stale once older than the allowed number of intervals.
    verdict = env.check(run_dir, interval_s=0.001)
    assert not verdict.healthy
    assert verdict.reason.startswith("last success")


def listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_metrics_endpoint_shows_the_monitor_series(monitor_env: MonitorEnv) -> None:
    env = monitor_env
    port = env.free_port()
    process = env.start("counter", METRICS_PORT=str(port), DOMOS_BIND_HOST="127.0.0.1")

    def scrape() -> dict[tuple[str, str], float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                body = resp.read().decode()
        except (urllib.error.URLError, ConnectionError):
            return None
        samples = {
            (sample.name, sample.labels.get("outcome", "")): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.labels.get("monitor") == "counter"
        }
        ticks = samples.get(("domos_monitor_ticks_total", "success"), 0)
        return samples if ticks >= 2 else None

    samples = env.wait_until(scrape, 30, "two successful ticks on /metrics")
    # Where the program binds, not every interface (issue 15: metrics reachable from the LAN).
    assert listening_addresses(port) == {"127.0.0.1"}
    assert samples[("domos_monitor_up", "")] == 1
    assert samples[("domos_monitor_leader", "")] == 1
    assert samples[("domos_monitor_interval_seconds", "")] == 0.1
    assert samples[("domos_monitor_items_processed_total", "")] >= 2
    assert samples[("domos_monitor_tick_duration_seconds_count", "")] >= 2
    assert samples[("domos_monitor_ticks_total", "failure")] == 0
    assert samples[("domos_monitor_last_success_timestamp_seconds", "")] > time.time() - 30
    assert process.terminate() == 0

    # The logs of that process: JSON lines with the program, the monitor and a tick id bound.
    written = [line for line in process.logs() if line["event"] == "sample_tick_written"]
    assert written
    assert {line["monitor"] for line in written} == {"counter"}
    assert {line["program"] for line in written} == {"counter"}
    assert all(line["tick_id"] for line in written)
    assert len({line["tick_id"] for line in written}) == len(written)
