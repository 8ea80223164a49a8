"""Benchmark: `domos migrate` (copy + verify) against pgloader and the raw sqlite3 | psql floor.

A generated SQLite file (1,000,000 chat messages + 200,000 payments, cached in var/bench/migrate)
goes into three fresh databases of the same PostgreSQL server. Each tool runs as a child process;
its peak RSS comes from os.wait4. The last line is one JSON object; "ratio" = ours / pgloader.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402

CACHE = ROOT / "var/bench/migrate"
MESSAGES = 1_000_000
PAYMENTS = 200_000
_WORDS_TEXT = (
    "квартира студия ипотека комиссия застройщик срок сдачи этаж вид двор парковка цена скидка "
    "flat price deal agent client viewing contract deposit bonus tower block floor"
)
WORDS = _WORDS_TEXT.split(" ")


def generate(path: Path) -> None:
    rng = random.Random(42)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.executescript(
        """
        PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE chat_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT, chat_id INTEGER NOT NULL,
            user_id INTEGER NOT NULL, text TEXT, created_at TEXT NOT NULL,
            is_useful INTEGER NOT NULL DEFAULT 0, score REAL
        );
        CREATE TABLE payments (
            id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, amount REAL NOT NULL,
            status TEXT NOT NULL, provider_payment_id TEXT UNIQUE, created_at TEXT NOT NULL
        );
        """
    )
    start = 1_700_000_000

    def messages():  # type: ignore[no-untyped-def]
        for i in range(MESSAGES):
            words = rng.randint(3, 30)
            yield (
                -1001000000000 - rng.randint(0, 40),
                rng.randint(1, 5000),
                " ".join(rng.choices(WORDS, k=words)),
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i * 7)),
                rng.random() < 0.1,
                round(rng.random() * 100, 3),
            )

    conn.executemany(
        "INSERT INTO chat_messages (chat_id, user_id, text, created_at, is_useful, score) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        messages(),
    )
    conn.execute("CREATE INDEX chat_messages_chat_created ON chat_messages (chat_id, created_at)")
    statuses = ("succeeded", "pending", "canceled", "waiting_for_capture")
    conn.executemany(
        "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                i + 1,
                rng.randint(1, 5000),
                rng.choice((990.0, 1990.0, 2490.5)),
                rng.choice(statuses),
                str(uuid.UUID(int=rng.getrandbits(128))),
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i * 31)),
            )
            for i in range(PAYMENTS)
        ),
    )
    conn.commit()
    conn.close()
    tmp.replace(path)


def busy_core_seconds() -> float:
    """CPU time the whole machine has spent busy (every process, PostgreSQL's included)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> list[int]:
    """The process tree under `root`, from each thread's children file: a few reads, where a
    scan of every /proc entry cost 7 ms a sample, CPU taken from the tool being measured."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue
    return found


def _peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's own peak RSS so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def measure(
    command: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None
) -> tuple[float, float, int, float]:
    """(seconds, peak RSS in MB of the largest process of the child tree, exit status, busy
    core-seconds of the machine during the run: the tool and the PostgreSQL server together).

    Peak RSS: os.wait4 only counts descendants that were waited for, and a fork server's
    workers are not, so every process of the tree is also sampled (VmHWM never decreases)."""
    busy = busy_core_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(
        command, shell=shell, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peaks: dict[int, float] = {}
    while True:
        for pid in _descendants(process.pid):
            peaks[pid] = max(peaks.get(pid, 0.0), _peak_rss_mb(pid))
        waited, status, usage = os.wait4(process.pid, os.WNOHANG)
        if waited:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    busy = busy_core_seconds() - busy
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 and process.stderr is not None:
        sys.stderr.write(process.stderr.read().decode(errors="replace")[-2000:])
    return seconds, max([usage.ru_maxrss / 1024, *peaks.values()]), process.returncode, busy


def count_rows(url: str, schema: str) -> int:
    with psycopg.connect(url) as conn:
        total = 0
        for table in ("chat_messages", "payments"):
            row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            total += int(row[0]) if row else 0
        return total


def main() -> int:
    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / f"chat_{MESSAGES}_{PAYMENTS}.sqlite"
    if not source.exists():
        print("generating", source, flush=True)
        generate(source)
    rows = MESSAGES + PAYMENTS
    results: dict[str, dict[str, Any]] = {}
    # Three fresh databases of one server, dropped at the end whatever happens.
    with ExitStack() as databases:
        _, url = databases.enter_context(scratch_database("migrate_ours"))
        work = CACHE / "work"
        seconds, rss, code, busy = measure(
            [
                sys.executable,
                "-m",
                "runtime.cli",
                "migrate",
                "--source",
                f"{source}=bench",
                "--target",
                url,
                "--work-dir",
                str(work),
                "--report",
                str(CACHE / "report.json"),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if code != 0:
            print(f"domos migrate failed with exit {code}", file=sys.stderr)
            return 1
        results["ours"] = {
            "seconds": seconds,
            "peak_rss_mb": rss,
            "core_s": busy,
            "rows": count_rows(url, "bench"),
            "phases_s": json.loads((CACHE / "report.json").read_text())["phases"],
        }

        _, url = databases.enter_context(scratch_database("migrate_pgloader"))
        seconds, rss, code, busy = measure(["pgloader", "--quiet", f"sqlite://{source}", url])
        if code != 0:
            print(f"pgloader failed with exit {code}", file=sys.stderr)
            return 1
        results["pgloader"] = {
            "seconds": seconds,
            "peak_rss_mb": rss,
            "core_s": busy,
            "rows": count_rows(url, "public"),
        }

        _, url = databases.enter_context(scratch_database("migrate_raw"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE SCHEMA raw;"
                "CREATE TABLE raw.chat_messages (id bigint, chat_id bigint, user_id bigint, "
                "text text, created_at text, is_useful bigint, score double precision);"
                "CREATE TABLE raw.payments (id bigint, user_id bigint, amount double precision, "
                "status text, provider_payment_id text, created_at text)"
            )
        pipeline = " && ".join(
            f"sqlite3 -csv {source} 'SELECT * FROM {table}' | "
            f"psql -q '{url}' -c '\\copy raw.{table} FROM STDIN WITH (FORMAT csv)'"
            for table in ("chat_messages", "payments")
        )
        seconds, rss, code, busy = measure(pipeline, shell=True)
        if code != 0:
            return 1
        results["raw_floor"] = {
            "seconds": seconds,
            "peak_rss_mb": rss,
            "core_s": busy,
            "rows": count_rows(url, "raw"),
        }
    for figures in results.values():
        figures["rows_per_s"] = round(rows / figures["seconds"])
        figures["seconds"] = round(figures["seconds"], 2)
        figures["peak_rss_mb"] = round(figures["peak_rss_mb"], 1)
        figures["core_s"] = round(figures["core_s"], 2)
    for tool, figures in results.items():
        print(
            f"{tool:10s} {figures['seconds']:8.2f} s {figures['rows_per_s']:>9} rows/s "
            f"{figures['peak_rss_mb']:7.1f} MB rss {figures['core_s']:6.2f} core-s (machine)"
            f"  rows={figures['rows']}"
        )
    ratio = results["ours"]["seconds"] / results["pgloader"]["seconds"]
    print(json.dumps({**results, "rows": rows, "ratio": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
