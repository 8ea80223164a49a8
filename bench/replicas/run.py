"""Work-claiming replicas: parse_messages, one instance against two, same backlog, one PostgreSQL.

parse_messages is the claiming monitor with the most realistic per-item work: each message is read,
nmarket channel posts become complexes, flats and price snapshots in one transaction, hashtagged
chat messages become useful_messages rows, the rest are marked ignored. Each instance is its own
process (bench/replicas/worker.py) with its own pool; they start together once every one is set up,
and tick back to back until the inbox is empty. The same backlog (a third listings, a third useful,
a third chatter) is loaded before each run; the tables are emptied in between. One and two
instances alternate for BENCH_ROUNDS rounds (3) and each keeps its best: the machine is shared.

Duplicates are read from the database: messages whose parse_attempts is not 1, plus items the
workers reported beyond the backlog. The last line is one JSON object: seconds of each run,
items/s, "ratio" = speed-up (one / two; target >= 1.7) and duplicates (target 0).
Needs PostgreSQL at DOMOS_TEST_DATABASE_URL; creates a uniquely named database and drops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402
from runtime.config import Settings  # noqa: E402
from runtime.db import AsyncDatabase, async_database  # noqa: E402
from runtime.db.migrations import upgrade  # noqa: E402
from services.sandbox import DEFAULT_BOT_TOKEN  # noqa: E402
from tests.conftest import database_environ  # noqa: E402
from tests.integration.monitors.conftest import empty_domain_tables  # noqa: E402

BACKLOG = int(os.environ.get("BENCH_BACKLOG", "3000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH_SIZE = os.environ.get("BENCH_BATCH_SIZE", "100")
NMARKET = -1_002_000_000_001
CHAT = -1_002_000_000_003
COMPLEXES = ("Солнечный", "Северная долина", "Лесной квартал", "Речной порт", "Галактика")
TARGET_SPEEDUP = 1.7
RUN_TIMEOUT_S = 150.0


def message_text(number: int) -> tuple[int, str]:
    """(chat, text) of backlog message `number`: a listing, a useful note or chatter."""
    kind = number % 3
    if kind == 0:
        rooms = 1 + number % 4
        area = 30 + (number * 7) % 90 + 0.1 * (number % 10)
        floor = 1 + number % 17
        price = 4_000_000 + (number * 37_000) % 9_000_000
        complex_name = COMPLEXES[number % len(COMPLEXES)]
        area_text = f"{area:.1f}".replace(".", ",")
        price_text = f"{price:,}".replace(",", " ")
        text = (
            f"ЖК {complex_name}, {rooms}-к кв {area_text} м², {floor}/17 эт,"
            f" {price_text} ₽, комиссия 2,5%"
        )
        return NMARKET, text
    if kind == 1:
        return CHAT, f"#полезное заметка номер {number} про ипотеку и налоговый вычет"
    return CHAT, f"Доброе утро, коллеги! Сообщение {number}"


async def load_backlog(db: AsyncDatabase) -> None:
    at = datetime.now(UTC) - timedelta(hours=1)
    async with db.transaction(db="useful") as tx:
        for number in range(BACKLOG):
            chat_id, text = message_text(number)
            kind = "channel_post" if chat_id == NMARKET else "message"
            await tx.execute(
                "INSERT INTO chat_messages (chat_id, message_id, kind, text, message_date, raw)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    chat_id,
                    number + 1,
                    kind,
                    text,
                    at,
                    {kind: {"message_id": number + 1, "text": text}},
                ),
            )


async def start_worker(environ: dict[str, str], owner: str) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "replicas" / "worker.py"),
        owner,
        cwd=ROOT,
        env=environ,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if line.strip() != b"ready":
        raise SystemExit(f"worker {owner} did not start: {line!r}")
    return process


async def run_instances(environ: dict[str, str], count: int) -> dict[str, Any]:
    workers: list[asyncio.subprocess.Process] = []
    reports: list[dict[str, Any]] = []
    try:
        for n in range(count):
            workers.append(await start_worker(environ, f"bench-{count}-{n}"))
        started = time.monotonic()
        for process in workers:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        for process in workers:
            assert process.stdout is not None
            out = await asyncio.wait_for(process.stdout.read(), RUN_TIMEOUT_S)
            if await process.wait() != 0:
                raise SystemExit(f"worker exited with {process.returncode}")
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        seconds = time.monotonic() - started
    finally:
        for process in workers:
            if process.returncode is None:
                process.kill()
                await process.wait()
    return {"instances": count, "seconds": round(seconds, 3), "workers": reports}


async def verify(db: AsyncDatabase) -> dict[str, int]:
    counts = await db.fetchone(
        "SELECT count(*) AS total,"
        " sum(CASE WHEN parse_attempts <> 1 THEN 1 ELSE 0 END) AS not_once,"
        " sum(CASE WHEN parse_status = 'pending' THEN 1 ELSE 0 END) AS pending,"
        " sum(CASE WHEN parse_status = 'parsed' THEN 1 ELSE 0 END) AS parsed"
        " FROM chat_messages",
        db="useful",
    )
    useful = await db.fetchval("SELECT count(*) FROM useful_messages", db="useful")
    snapshots = await db.fetchval("SELECT count(*) FROM nmarket_price_snapshots", db="nmarket")
    assert counts is not None
    return {
        "messages": int(counts["total"]),
        "not_once": int(counts["not_once"] or 0),
        "pending": int(counts["pending"] or 0),
        "parsed": int(counts["parsed"] or 0),
        "useful_messages": int(useful),
        "price_snapshots": int(snapshots),
    }


async def run(url: str, workdir: Path) -> dict[str, Any]:
    environ = {
        **os.environ,
        **database_environ("postgres", str(workdir / "data"), url),
        "LOG_LEVEL": "warning",
        "NMARKET_CHATS": str(NMARKET),
        "PARSE_BATCH_SIZE": BATCH_SIZE,
        # No voice notes in the backlog: the Bot API is never called.
        "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "TELEGRAM_BOT_TOKEN": DEFAULT_BOT_TOKEN,
    }
    settings = Settings.from_env(environ)
    async with async_database(settings) as db:
        await upgrade(db)
    # Alternate one and two instances and keep each one's best round: the machine is shared, and
    # interleaving exposes both to the same background load.
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for round_number in range(1, ROUNDS + 1):
        for count in (1, 2):
            empty_domain_tables(url)
            async with async_database(settings) as db:
                await load_backlog(db)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("ANALYZE")
                result = await run_instances(environ, count)
                result["check"] = await verify(db)
            reported = sum(worker["items"] for worker in result["workers"])
            result["duplicates"] = result["check"]["not_once"] + max(0, reported - BACKLOG)
            result["items_per_s"] = round(BACKLOG / result["seconds"], 1)
            runs[count].append(result)
            print(f"round {round_number}, {count} instance(s): {json.dumps(result)}", flush=True)
    one = min(runs[1], key=lambda run: run["seconds"])
    two = min(runs[2], key=lambda run: run["seconds"])
    every = runs[1] + runs[2]
    speedup = one["seconds"] / two["seconds"]
    duplicates = sum(run["duplicates"] for run in every)
    complete = all(
        run["check"]["pending"] == 0 and run["check"]["messages"] == BACKLOG for run in every
    )
    return {
        "benchmark": "replicas_parse_messages",
        "backlog": BACKLOG,
        "batch_size": int(BATCH_SIZE),
        "rounds": ROUNDS,
        "one_instance_s": one["seconds"],
        "two_instances_s": two["seconds"],
        "one_instance_runs_s": [run["seconds"] for run in runs[1]],
        "two_instances_runs_s": [run["seconds"] for run in runs[2]],
        "one_items_per_s": one["items_per_s"],
        "two_items_per_s": two["items_per_s"],
        "split": [worker["items"] for worker in two["workers"]],
        # Context for the figures: the workers' own CPU and the machine's load (2 shared cores).
        "one_worker_cpu_s": round(sum(w["cpu_s"] for w in one["workers"]), 3),
        "two_workers_cpu_s": round(sum(w["cpu_s"] for w in two["workers"]), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "duplicates": duplicates,
        "complete": complete,
        "ratio": round(speedup, 3),
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": speedup >= TARGET_SPEEDUP and duplicates == 0 and complete,
    }


async def main() -> None:
    with (
        scratch_database("replicas") as (_, url),
        tempfile.TemporaryDirectory(prefix="bench-replicas-") as workdir,
    ):
        result = await run(url, Path(workdir))
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
