"""notifymonitor draining an outbox backlog through a real sandbox at Telegram's default limits.

Processes: the sandbox (`services.sandbox.cli`, default flood limits: 30/s per bot, 1/s per chat
with a burst of 3, 20/min per group) and `domos monitor notifymonitor` (the runner, its default
limits: 30/s overall, 1/s per chat, 20/min per group), on a fresh PostgreSQL database.

Phase 1: 600 messages to 600 members, committed at once while the monitor idles. The global limit
governs, so delivered/s = 600 / (commit -> last sent_at) is compared with the configured 30/s:
that is "ratio" (target >= 0.95). Phase 2: bursts, 8 messages to each of 4 members and 24 to one
group (more than its 20/min); reported against the span a perfect relay would need under the same
limits (the monitor's RatePlanner replayed on an exact clock with zero latency).

Checks, from the sandbox's sent messages: every message delivered exactly once, never two to one
chat in the same second (`date`), never more than 20 to the group in any 60 s. 429s answered: the
monitor's `domos_notify_messages_total{outcome="rate_limited"}` from its /metrics (target 0).
The last line is one JSON object. Needs PostgreSQL at DOMOS_TEST_DATABASE_URL; creates a uniquely
named database and drops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402
from monitors.decisions.rate_limit import RateLimits, RatePlanner  # noqa: E402
from runtime.config import Settings  # noqa: E402
from runtime.db import AsyncDatabase, async_database  # noqa: E402
from runtime.db.migrations import upgrade  # noqa: E402
from services.sandbox import DEFAULT_BOT_TOKEN  # noqa: E402

BACKLOG = int(os.environ.get("BENCH_BACKLOG", "600"))
BURST_CHATS = 4
BURST_PER_CHAT = 8
GROUP_BURST = 24
GROUP_ID = -1_009_000_000_001
FIRST_USER = 810_000_001
LIMITS = RateLimits()  # the monitor's defaults: NOTIFY_* unset
TARGET_RATIO = 0.95
PHASE_TIMEOUT_S = 150.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ideal_span_s(chat_ids: list[int], limits: RateLimits) -> float:
    """First to last send of a perfect relay: every message ready at 0, exact clock, no latency."""
    planner = RatePlanner(limits)
    pending = Counter(chat_ids)
    now = 0.0
    last = 0.0
    while pending:
        waits = []
        for chat_id in list(pending):
            wait = planner.try_acquire(chat_id, now)
            if wait == 0:
                last = now
                pending[chat_id] -= 1
                if not pending[chat_id]:
                    del pending[chat_id]
            else:
                waits.append(wait)
        if waits and pending:
            now += min(waits)
    return last


async def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout_s} s")


async def control(http: aiohttp.ClientSession, base: str, method: str, path: str, body: Any = None):
    async with http.request(method, f"{base}/_sandbox{path}", json=body) as resp:
        data = await resp.json()
        if resp.status != 200:
            raise SystemExit(f"sandbox {method} {path}: {resp.status} {data}")
        return data


async def enqueue(db: AsyncDatabase, phase: str, chat_ids: list[int]) -> None:
    """One transaction: the whole phase becomes visible to the monitor at once."""
    async with db.transaction() as tx:
        for number, chat_id in enumerate(chat_ids):
            await tx.execute(
                "INSERT INTO outbox (dedupe_key, chat_id, kind, text) VALUES (?, ?, 'bench', ?)",
                (f"bench:{phase}:{number}", chat_id, f"Напоминание {phase} №{number}"),
            )


async def drain(db: AsyncDatabase, phase: str, count: int) -> list[datetime]:
    """Wait until every row of the phase is final; its sent_at values."""
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    like = f"bench:{phase}:%"
    while time.monotonic() < deadline:
        final = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE dedupe_key LIKE ? AND status IN ('sent', 'dead')",
            (like,),
        )
        if final == count:
            rows = await db.fetchall(
                "SELECT status, sent_at FROM outbox WHERE dedupe_key LIKE ?", (like,)
            )
            dead = [row for row in rows if row["status"] != "sent"]
            if dead:
                raise SystemExit(f"{len(dead)} messages of {phase} were dead-lettered")
            return sorted(row["sent_at"] for row in rows)
        await asyncio.sleep(0.1)
    raise SystemExit(f"phase {phase} did not drain within {PHASE_TIMEOUT_S} s")


async def rate_limited_count(http: aiohttp.ClientSession, metrics_port: int) -> float:
    async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
        text = await resp.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("domos_notify_messages_total{") and 'outcome="rate_limited"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def sent_checks(sent: list[dict[str, Any]], expected: Counter[int]) -> dict[str, Any]:
    per_chat: Counter[int] = Counter(message["chat"]["id"] for message in sent)
    same_second: Counter[tuple[int, int]] = Counter(
        (message["chat"]["id"], message["date"]) for message in sent
    )
    group_dates = sorted(m["date"] for m in sent if m["chat"]["id"] == GROUP_ID)
    # Dates are whole seconds: dates d..d+59 lie within less than 60 s of real time.
    max_group_60s = max(
        (sum(1 for other in group_dates if date <= other <= date + 59) for date in group_dates),
        default=0,
    )
    return {
        "sent_total": len(sent),
        "duplicates": sum(max(0, per_chat[c] - n) for c, n in expected.items()),
        "missing": sum(max(0, n - per_chat[c]) for c, n in expected.items()),
        "max_per_chat_in_one_second": max(same_second.values(), default=0),
        "max_per_group_in_60s": max_group_60s,
    }


def min_gap_s(chat_ids: list[int], sent_at: dict[int, list[datetime]]) -> float:
    gaps = [
        (later - earlier).total_seconds()
        for chat_id in set(chat_ids)
        for earlier, later in zip(sent_at[chat_id], sent_at[chat_id][1:], strict=False)
    ]
    return min(gaps, default=float("inf"))


async def run(url: str, workdir: Path) -> dict[str, Any]:
    environ = {
        "DB_TYPE": "postgres",
        "DATABASE_URL": url,
        "DOMOS_DATA_DIR": str(workdir / "data"),
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "6",
    }
    async with async_database(Settings.from_env(environ)) as db:
        await upgrade(db)

    sandbox_port, metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{sandbox_port}"
    child_env = {**os.environ, "LOG_LEVEL": "warning", "PYTHONPATH": str(ROOT)}
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.sandbox.cli",
        "--host",
        "127.0.0.1",
        "--port",
        str(sandbox_port),
        cwd=ROOT,
        env=child_env,
        stdout=asyncio.subprocess.DEVNULL,
    )
    monitor = None
    try:
        await wait_http(f"{base}/_sandbox/health")
        users = [FIRST_USER + n for n in range(BACKLOG + BURST_CHATS)]
        async with aiohttp.ClientSession() as http:
            limits = await control(http, base, "GET", "/telegram/limits")
            for user in users:
                await control(http, base, "POST", "/telegram/users", {"user_id": user})
            await control(
                http, base, "POST", "/telegram/chats", {"id": GROUP_ID, "type": "supergroup"}
            )
            monitor_env = {
                **child_env,
                **environ,
                "TELEGRAM_API_URL": base,
                "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
                "METRICS_PORT": str(metrics_port),
                "DOMOS_RUN_DIR": str(workdir / "run"),
            }
            monitor = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "runtime.cli",
                "monitor",
                "notifymonitor",
                cwd=ROOT,
                env=monitor_env,
                stdout=asyncio.subprocess.DEVNULL,
            )
            await wait_http(f"http://127.0.0.1:{metrics_port}/metrics")
            await asyncio.sleep(1.5)  # past its first (empty) tick: the monitor idles

            backlog = users[:BACKLOG]
            bursts = [u for u in users[BACKLOG:] for _ in range(BURST_PER_CHAT)]
            bursts += [GROUP_ID] * GROUP_BURST
            phases: dict[str, dict[str, Any]] = {}
            sent_at: dict[int, list[datetime]] = defaultdict(list)
            for phase, chat_ids in (("backlog", backlog), ("bursts", bursts)):
                async with async_database(Settings.from_env(environ)) as db:
                    started = time.time()
                    await enqueue(db, phase, chat_ids)
                    committed = time.time()
                    times = await drain(db, phase, len(chat_ids))
                    rows = await db.fetchall(
                        "SELECT chat_id, sent_at FROM outbox WHERE dedupe_key LIKE ?"
                        " ORDER BY sent_at",
                        (f"bench:{phase}:%",),
                    )
                for row in rows:
                    sent_at[row["chat_id"]].append(row["sent_at"])
                drain_s = times[-1].timestamp() - committed
                span_s = (times[-1] - times[0]).total_seconds()
                ideal_s = ideal_span_s(chat_ids, LIMITS)
                phases[phase] = {
                    "messages": len(chat_ids),
                    "enqueue_s": round(committed - started, 3),
                    "drain_s": round(drain_s, 3),
                    "send_span_s": round(span_s, 3),
                    "ideal_span_s": round(ideal_s, 3),
                    "delivered_per_s": round(len(chat_ids) / drain_s, 2),
                    "span_ratio": round(ideal_s / span_s, 3) if span_s else 1.0,
                }
                print(f"{phase}: {json.dumps(phases[phase])}", flush=True)
            rate_limited = await rate_limited_count(http, metrics_port)
            sent = await control(http, base, "GET", "/telegram/sent")
    finally:
        for process in (monitor, sandbox):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 40)

    expected = Counter(backlog + bursts)
    checks = sent_checks(sent, expected)
    backlog_rate = phases["backlog"]["delivered_per_s"]
    return {
        "benchmark": "notify_drain",
        "delivered_per_s": backlog_rate,
        "configured_limit_per_s": LIMITS.global_per_s,
        "ratio": round(backlog_rate / LIMITS.global_per_s, 3),
        "rate_limited_429": int(rate_limited),
        **checks,
        "min_per_chat_gap_s": round(min_gap_s(bursts, sent_at), 3),
        "per_chat_limit_per_s": LIMITS.chat_per_s,
        "per_group_limit_per_min": LIMITS.group_per_min,
        "sandbox_limits": limits,
        "phases": phases,
        "target_ratio": TARGET_RATIO,
        "meets_target": backlog_rate / LIMITS.global_per_s >= TARGET_RATIO
        and rate_limited == 0
        and checks["duplicates"] == 0
        and checks["missing"] == 0
        and checks["max_per_chat_in_one_second"] <= 1
        and checks["max_per_group_in_60s"] <= LIMITS.group_per_min,
    }


async def main() -> None:
    with (
        scratch_database("notify") as (_, url),
        tempfile.TemporaryDirectory(prefix="bench-notify-") as workdir,
    ):
        result = await run(url, Path(workdir))
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
