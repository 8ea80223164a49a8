"""Benchmark: `domos migrate` (copy + verify) against pgloader and two sqlite3 | psql floors.

Two generated SQLite files (cached in var/bench/migrate), each going into four fresh databases of
the same PostgreSQL server: ours, pgloader, the raw floor (`sqlite3 -csv | psql \\copy` into
columns as SQLite hands them over: mostly text, no keys) and the typed floor (the same pipe into
the column types ours gives, then the same keys and indexes: a hand-written migration without
verification, the least a typed load costs). The workloads:
- `chat`: 1,000,000 chat messages + 200,000 payments, integers, reals and texts;
- `legacy` (issue 17): 300,000 payments and 50,000 users of a legacy bot: JSON payloads, DATETIME
  texts and unix times, BOOLEAN 0/1, DECIMAL(10,2) money, MONEY, DATE.
pgloader runs with its default cast rules, plus those a workload needs for every row to arrive
(on legacy: MONEY as numeric and the unix seconds in a TIMESTAMP column as timestamptz, without
which it refuses every payment). Each tool runs as a child process; its peak RSS comes from
os.wait4 and /proc. The last line is one JSON object: the chat figures at the top level (as
before), and per workload "ratio" (ours / pgloader), "floor_ratio" (ours / the raw floor),
"typed_floor_ratio" (ours / the typed floor) and "pgloader_complete" (false where pgloader left
rows out: its time is then for a partial load, and the floors are the comparisons that hold).
`run.py legacy` runs one workload; `--cpus N` runs everything, the server included, on N CPUs
(how each tool scales with CPUs). Each tool runs `--rounds` times (3), the tools interleaved,
each round in another order; a tool's figures are those of its run of median time, and `runs_s`
lists every run's seconds.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.pinning import pinned  # noqa: E402
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


LEGACY_PAYMENTS = 300_000
LEGACY_USERS = 50_000


def generate_legacy(path: Path) -> None:
    """A bot's payments as legacy code writes them: every declared type one SQLite gives
    NUMERIC affinity (JSON, DATETIME, BOOLEAN, DECIMAL(10,2), MONEY, DATE)."""
    rng = random.Random(17)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    conn.executescript(
        """
        PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
        CREATE TABLE users (
            id INTEGER PRIMARY KEY, telegram_id INTEGER UNIQUE NOT NULL, username TEXT,
            is_admin BOOLEAN DEFAULT 0, is_blocked BOOLEAN DEFAULT 0, settings JSON,
            registered_at DATETIME DEFAULT CURRENT_TIMESTAMP, birthday DATE
        );
        CREATE TABLE payments (
            id INTEGER PRIMARY KEY AUTOINCREMENT, user_id INTEGER NOT NULL REFERENCES users(id),
            payment_id TEXT UNIQUE, amount DECIMAL(10,2) NOT NULL, fee MONEY,
            currency TEXT DEFAULT 'RUB', status TEXT NOT NULL, is_recurrent BOOLEAN DEFAULT 0,
            payload JSON, created_at DATETIME DEFAULT CURRENT_TIMESTAMP, paid_at TIMESTAMP
        );
        """
    )
    start = 1_700_000_000
    conn.executemany(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i + 1,
                100_000_000 + i * 37,
                f"user_{i}" if i % 5 else None,
                int(i % 500 == 0),
                "true" if i % 97 == 0 else "false",  # texts, as some bots write them
                json.dumps({"lang": rng.choice(["ru", "en"]), "notify": i % 2 == 0}),
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + i * 60)),
                f"{1960 + i % 45}-{1 + i % 12:02d}-{1 + i % 28:02d}" if i % 3 else None,
            )
            for i in range(LEGACY_USERS)
        ),
    )
    statuses = ("succeeded", "pending", "canceled", "waiting_for_capture")

    def payments():  # type: ignore[no-untyped-def]
        for i in range(LEGACY_PAYMENTS):
            status = rng.choice(statuses)
            amount = rng.choice(("990.00", "1990.00", "2490.50", 990.0, 149.9))
            pid = str(uuid.UUID(int=rng.getrandbits(128)))
            payload = {
                "id": pid,
                "status": status,
                "amount": {"value": str(amount), "currency": "RUB"},
                "description": f"Подписка на {1 + i % 12} мес.",
                "metadata": {"user_id": 1 + i % LEGACY_USERS, "order": i},
                "paid": status == "succeeded",
            }
            created = start + i * 17
            yield (
                1 + i % LEGACY_USERS,
                pid,
                amount,
                round(float(amount) * 0.035, 2),
                status,
                i % 3 == 0,
                json.dumps(payload, ensure_ascii=i % 2 == 0),
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created)),
                created + 40 if status == "succeeded" else None,  # unix seconds
            )

    conn.executemany(
        "INSERT INTO payments (user_id, payment_id, amount, fee, status, is_recurrent, payload, "
        "created_at, paid_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        payments(),
    )
    conn.execute("CREATE INDEX payments_user ON payments (user_id, created_at)")
    conn.commit()
    conn.close()
    tmp.replace(path)


@dataclass(frozen=True)
class Workload:
    name: str
    file: str
    tables: tuple[str, ...]
    rows: int
    generate: Callable[[Path], None]
    #: The floor's tables: every column as SQLite hands it over in CSV, no type work.
    raw_ddl: str
    #: The typed floor: a hand-written migration of the same pipe, without verification. Its
    #: tables have the column types ours gives (PostgreSQL converts the CSV texts; SQLite's
    #: SELECT converts what PostgreSQL cannot take, unix seconds); its keys, unique constraints,
    #: foreign keys and indexes, those ours builds, are added after the load, as ours does.
    typed_ddl: str
    typed_selects: tuple[str, ...]  # one per table, in `tables` order
    typed_keys: str
    #: pgloader's CAST clause: the rules without which it would leave rows out.
    pgloader_casts: str = ""


WORKLOADS = {
    "chat": Workload(
        "chat",
        f"chat_{MESSAGES}_{PAYMENTS}.sqlite",
        ("chat_messages", "payments"),
        MESSAGES + PAYMENTS,
        generate,
        "CREATE TABLE raw.chat_messages (id bigint, chat_id bigint, user_id bigint, "
        "text text, created_at text, is_useful bigint, score double precision);"
        "CREATE TABLE raw.payments (id bigint, user_id bigint, amount double precision, "
        "status text, provider_payment_id text, created_at text)",
        "CREATE TABLE typed.chat_messages (id bigint NOT NULL, chat_id bigint NOT NULL, "
        'user_id bigint NOT NULL, text text COLLATE "C", created_at text COLLATE "C" NOT NULL, '
        "is_useful bigint NOT NULL, score double precision);"
        "CREATE TABLE typed.payments (id bigint NOT NULL, user_id bigint NOT NULL, "
        'amount double precision NOT NULL, status text COLLATE "C" NOT NULL, '
        'provider_payment_id text COLLATE "C", created_at text COLLATE "C" NOT NULL)',
        ("SELECT * FROM chat_messages", "SELECT * FROM payments"),
        "ALTER TABLE typed.chat_messages ADD PRIMARY KEY (id);"
        "ALTER TABLE typed.payments ADD PRIMARY KEY (id), ADD UNIQUE (provider_payment_id);"
        "CREATE INDEX ON typed.chat_messages (chat_id, created_at)",
    ),
    "legacy": Workload(
        "legacy",
        f"legacy_{LEGACY_PAYMENTS}_{LEGACY_USERS}.sqlite",
        ("users", "payments"),
        LEGACY_PAYMENTS + LEGACY_USERS,
        generate_legacy,
        "CREATE TABLE raw.users (id bigint, telegram_id bigint, username text, is_admin text, "
        "is_blocked text, settings text, registered_at text, birthday text);"
        "CREATE TABLE raw.payments (id bigint, user_id bigint, payment_id text, amount text, "
        "fee text, currency text, status text, is_recurrent text, payload text, "
        "created_at text, paid_at text)",
        "CREATE TABLE typed.users (id bigint NOT NULL, telegram_id bigint NOT NULL, "
        'username text COLLATE "C", is_admin boolean, is_blocked boolean, settings json, '
        "registered_at timestamptz, birthday date);"
        "CREATE TABLE typed.payments (id bigint NOT NULL, user_id bigint NOT NULL, "
        'payment_id text COLLATE "C", amount numeric(10,2) NOT NULL, fee numeric, '
        'currency text COLLATE "C", status text COLLATE "C" NOT NULL, is_recurrent boolean, '
        "payload json, created_at timestamptz, paid_at timestamptz)",
        (
            "SELECT * FROM users",
            "SELECT id, user_id, payment_id, amount, fee, currency, status, is_recurrent, "
            "payload, created_at, CASE WHEN typeof(paid_at) = 'integer' "
            "THEN datetime(paid_at, 'unixepoch') ELSE paid_at END FROM payments",
        ),
        "ALTER TABLE typed.users ADD PRIMARY KEY (id), ADD UNIQUE (telegram_id);"
        "ALTER TABLE typed.payments ADD PRIMARY KEY (id), ADD UNIQUE (payment_id);"
        "ALTER TABLE typed.payments ADD FOREIGN KEY (user_id) REFERENCES typed.users (id);"
        "CREATE INDEX ON typed.payments (user_id, created_at)",
        # Without them: "invalid input syntax for type money: 87.17d0" and "timestamp out of
        # range: 1700000176-01-01", and not one payment arrives.
        "type money to numeric drop typemod using float-to-string, "
        "column payments.paid_at to timestamptz using unix-timestamp-to-timestamptz",
    ),
}


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


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far (its own, not its children's)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: CPU seconds of the last measured tool's own process tree (sampled like its RSS, so a process
#: that lives less than a sample is missed): on a machine other jobs share, this changes less
#: than wall time or the machine's busy time. The PostgreSQL server's work is not in it.
LAST_TOOL_CPU: list[float] = [0.0]


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
    cpu: dict[int, float] = {}
    while True:
        for pid in _descendants(process.pid):
            peaks[pid] = max(peaks.get(pid, 0.0), _peak_rss_mb(pid))
            cpu[pid] = max(cpu.get(pid, 0.0), _cpu_seconds(pid))
        waited, status, usage = os.wait4(process.pid, os.WNOHANG)
        if waited:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    busy = busy_core_seconds() - busy
    process.returncode = os.waitstatus_to_exitcode(status)
    # The root and the children it waited for, from wait4; the others as last sampled.
    cpu[process.pid] = usage.ru_utime + usage.ru_stime
    LAST_TOOL_CPU[0] = sum(cpu.values())
    if process.returncode != 0 and process.stderr is not None:
        sys.stderr.write(process.stderr.read().decode(errors="replace")[-2000:])
    return seconds, max([usage.ru_maxrss / 1024, *peaks.values()]), process.returncode, busy


def tool_figures(seconds: float, rss: float, busy: float, rows: int) -> dict[str, Any]:
    """One tool's figures from `measure` (its own CPU from LAST_TOOL_CPU) and its rows."""
    return {
        "seconds": seconds,
        "peak_rss_mb": rss,
        "core_s": busy,
        "tool_cpu_s": LAST_TOOL_CPU[0],
        "rows": rows,
    }


def count_rows(url: str, schema: str, tables: tuple[str, ...]) -> int:
    with psycopg.connect(url) as conn:
        total = 0
        for table in tables:
            row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            total += int(row[0]) if row else 0
        return total


def _ours(workload: Workload, source: Path) -> dict[str, Any] | None:
    with scratch_database("migrate_ours") as (_, url):
        work = CACHE / "work"
        report = CACHE / f"report-{workload.name}.json"
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
                str(report),
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        if code != 0:
            print(f"domos migrate failed with exit {code}", file=sys.stderr)
            return None
        return {
            **tool_figures(seconds, rss, busy, count_rows(url, "bench", workload.tables)),
            "phases_s": json.loads(report.read_text())["phases"],
        }


def _pgloader(workload: Workload, source: Path) -> dict[str, Any] | None:
    with scratch_database("migrate_pgloader") as (_, url):
        command = ["pgloader", "--quiet", f"sqlite://{source}", url]
        if workload.pgloader_casts:
            load = CACHE / f"{workload.name}.load"
            load.write_text(
                f"LOAD DATABASE FROM sqlite://{source} INTO {url}\n"
                f"CAST {workload.pgloader_casts};\n"
            )
            command = ["pgloader", "--quiet", str(load)]
        seconds, rss, code, busy = measure(command)
        if code != 0:
            print(f"pgloader failed with exit {code}", file=sys.stderr)
            return None
        return tool_figures(seconds, rss, busy, count_rows(url, "public", workload.tables))


def _raw_floor(workload: Workload, source: Path) -> dict[str, Any] | None:
    with scratch_database("migrate_raw") as (_, url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA raw;" + workload.raw_ddl)
        pipeline = " && ".join(
            f"sqlite3 -csv {source} 'SELECT * FROM {table}' | "
            f"psql -q '{url}' -c '\\copy raw.{table} FROM STDIN WITH (FORMAT csv)'"
            for table in workload.tables
        )
        seconds, rss, code, busy = measure(pipeline, shell=True)
        if code != 0:
            return None
        return tool_figures(seconds, rss, busy, count_rows(url, "raw", workload.tables))


def _typed_floor(workload: Workload, source: Path) -> dict[str, Any] | None:
    with scratch_database("migrate_typed") as (_, url):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA typed;" + workload.typed_ddl)
        loads = [
            f'sqlite3 -csv {source} "{select}" | '
            f"psql -q '{url}' -c '\\copy typed.{table} FROM STDIN WITH (FORMAT csv)'"
            for table, select in zip(workload.tables, workload.typed_selects, strict=True)
        ]
        keys = f"psql -q -v ON_ERROR_STOP=1 '{url}' -c '{workload.typed_keys}'"
        # Texts without a zone are UTC, as ours reads them.
        environ = {**os.environ, "PGTZ": "UTC"}
        seconds, rss, code, busy = measure(" && ".join([*loads, keys]), shell=True, env=environ)
        if code != 0:
            return None
        return tool_figures(seconds, rss, busy, count_rows(url, "typed", workload.tables))


TOOLS: dict[str, Callable[[Workload, Path], dict[str, Any] | None]] = {
    "ours": _ours,
    "pgloader": _pgloader,
    "raw_floor": _raw_floor,
    "typed_floor": _typed_floor,
}


def run_workload(workload: Workload, rounds: int) -> dict[str, Any] | None:
    """Every tool `rounds` times, interleaved (each round in another order), each run into a
    fresh database; per tool, the run of median time. A machine busy for a moment (writeback
    after a test suite, another process) then costs one run of one tool, not its figure."""
    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / workload.file
    if not source.exists():
        print("generating", source, flush=True)
        workload.generate(source)
    rows = workload.rows
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in TOOLS}
    order = list(TOOLS)
    for round_number in range(rounds):
        shift = round_number % len(order)
        for tool in order[shift:] + order[:shift]:
            figures = TOOLS[tool](workload, source)
            if figures is None:
                return None
            runs[tool].append(figures)
    results: dict[str, dict[str, Any]] = {}
    for tool, measured in runs.items():
        ranked = sorted(measured, key=lambda f: f["seconds"])
        results[tool] = {
            **ranked[(len(ranked) - 1) // 2],
            "runs_s": [round(f["seconds"], 2) for f in measured],
        }
    for figures in results.values():
        figures["rows_per_s"] = round(rows / figures["seconds"])
        figures["seconds"] = round(figures["seconds"], 2)
        figures["peak_rss_mb"] = round(figures["peak_rss_mb"], 1)
        figures["core_s"] = round(figures["core_s"], 2)
        figures["tool_cpu_s"] = round(figures["tool_cpu_s"], 2)
    for tool, figures in results.items():
        print(
            f"{workload.name:6s} {tool:10s} {figures['seconds']:8.2f} s "
            f"{figures['rows_per_s']:>9} rows/s {figures['peak_rss_mb']:7.1f} MB rss "
            f"{figures['core_s']:6.2f} core-s (machine) {figures['tool_cpu_s']:6.2f} cpu-s (tool)"
            f"  rows={figures['rows']}  runs {figures['runs_s']}"
        )
    # pgloader exits 0 after sending the rows PostgreSQL refuses to its reject file (on the
    # legacy payments: "invalid input syntax for type money: 87.17d0"): its time is then for a
    # partial load, and the floor is the comparison that holds.
    pgloader_complete = results["pgloader"]["rows"] == rows
    if not pgloader_complete:
        print(
            f"{workload.name:6s} pgloader loaded {results['pgloader']['rows']} of {rows} rows: "
            "its time is for a partial load; compare against the floors"
        )
    ours = results["ours"]["seconds"]
    ratio = round(ours / results["pgloader"]["seconds"], 3)
    floor_ratio = round(ours / results["raw_floor"]["seconds"], 3)
    typed_ratio = round(ours / results["typed_floor"]["seconds"], 3)
    print(
        f"{workload.name:6s} ours/floor {floor_ratio:.2f}  ours/typed_floor {typed_ratio:.2f}"
        f"  ours/pgloader {ratio:.2f}" + ("" if pgloader_complete else " (pgloader partial)")
    )
    return {
        **results,
        "rows": rows,
        "ratio": ratio,
        "floor_ratio": floor_ratio,
        "typed_floor_ratio": typed_ratio,
        "pgloader_complete": pgloader_complete,
    }


def main(argv: list[str]) -> int:
    # Ours runs from this tree, and where PYTHONDONTWRITEBYTECODE is set (CI, this project's
    # images) every run would compile its modules again; an installed domos has them compiled
    # by pip at install time. Compiled once here, the runs measure the migration, as deployed.
    compileall.compile_dir(ROOT / "runtime", quiet=1)
    parser = argparse.ArgumentParser(description="domos migrate against pgloader and two floors")
    parser.add_argument("workloads", nargs="*", help=f"of {list(WORKLOADS)} (default: all)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool (default 3)")
    parser.add_argument(
        "--cpus",
        type=int,
        help="run every tool and the PostgreSQL server on the first N CPUs (bench/pinning.py)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    names = args.workloads or list(WORKLOADS)
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        print(f"unknown workload(s) {unknown}; known: {list(WORKLOADS)}", file=sys.stderr)
        return 2
    figures: dict[str, dict[str, Any]] = {}
    with pinned(args.cpus):
        cpus = len(os.sched_getaffinity(0))
        print(f"on {cpus} CPU(s)", flush=True)
        for name in names:
            result = run_workload(WORKLOADS[name], args.rounds)
            if result is None:
                return 1
            figures[name] = {**result, "cpus": cpus}
    summary = {
        name: {
            "ratio": f["ratio"],
            "floor_ratio": f["floor_ratio"],
            "typed_floor_ratio": f["typed_floor_ratio"],
            "pgloader_complete": f["pgloader_complete"],
        }
        for name, f in figures.items()
    }
    print(json.dumps({**figures.get("chat", {}), "workloads": figures, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
