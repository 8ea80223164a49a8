"""bench/api: token-verify and subscription-status under concurrent load on loopback.

Ours: `domos api` (FastAPI + runtime.db + metrics middleware + pydantic models) against a plain
Starlette app doing the same queries with raw psycopg (bench/api/baseline.py), both under uvicorn
with one worker and the same pool size, on a fresh PostgreSQL database seeded with members and
tokens. Ours runs with its identity checks and limits on: every status request carries the
member's Mini App initData (checked: HMAC, auth_date, the member acted for), every request counts
against the per-source and per-member rate limits (budgets set high enough never to refuse), and
the body and concurrency limits are at their defaults. The baseline checks nothing. Rounds
alternate between the two servers to spread machine noise. The last line is one JSON object;
"ratio" is ours / baseline requests per second (geometric mean of both endpoints).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.scratch import scratch_database  # noqa: E402
from runtime.config import Secret, Settings  # noqa: E402
from runtime.db import async_database  # noqa: E402
from runtime.db.migrations import upgrade  # noqa: E402
from runtime.telegram_proof import mini_app_authorization  # noqa: E402
from services.api.tokens import TokenHasher  # noqa: E402
from tests.integration.api.processes import free_port, start_program  # noqa: E402

MEMBERS = 2000
TOKENS = 2000
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
ROUND_S = float(os.environ.get("BENCH_ROUND_S", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
WARMUP_S = 1.0
POOL_MAX = "10"
HASH_KEY = "bench-token-hash-key"
BOT_TOKEN = "100000001:bench-api-bot-token-abcdefghijklmnop"
#: Counted on every request, never reached: the bench measures the cost of the checks.
UNREACHED_RATE = "100000000/minute"


async def seed(url: str) -> list[str]:
    environ = {"DB_TYPE": "postgres", "DATABASE_URL": url, "DOMOS_DATA_DIR": "/tmp"}
    hasher = TokenHasher(Secret(HASH_KEY))
    tokens = [f"adv_bench{uuid.uuid4().hex}{i}" for i in range(TOKENS)]
    async with async_database(Settings.from_env(environ)) as db:
        await upgrade(db, ["main", "advert", "contract"])
        tariff = await db.fetchval(
            "INSERT INTO tariffs (code, title, price_minor, period_days)"
            " VALUES ('month', 'Месяц', 99000, 30) RETURNING id"
        )
        async with db.transaction() as tx:
            await tx.executemany(
                "INSERT INTO users (telegram_id) VALUES (?)",
                [(1_000_000 + i,) for i in range(MEMBERS)],
            )
            await tx.execute(
                "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
                " current_period_end) SELECT id, ?, 'active', now(), now() + interval '30 days'"
                " FROM users",
                (tariff,),
            )
        async with db.transaction(db="advert") as tx:
            await tx.executemany(
                "INSERT INTO tokens (token_hash, token_prefix, issued_to, scope)"
                " VALUES (?, ?, ?, ?)",
                [(hasher.hash(t), t[:12], "partner", "publish") for t in tokens],
            )
        await db.execute("ANALYZE")
    return tokens


#: Each member's Mini App Authorization header (initData stays valid for the whole run).
PROOFS = [mini_app_authorization(BOT_TOKEN, 1_000_000 + i) for i in range(MEMBERS)]


async def load(base: str, endpoint: str, tokens: list[str], duration_s: float) -> list[float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + duration_s
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(seed: int) -> None:
            rng = random.Random(seed)
            while (started := time.perf_counter()) < stop_at:
                if endpoint == "status":
                    member = rng.randrange(MEMBERS)
                    request = http.get(
                        f"{base}/v1/subscriptions/{1_000_000 + member}",
                        headers={"Authorization": PROOFS[member]},
                    )
                else:
                    request = http.post(
                        f"{base}/v1/advert/tokens/verify", json={"token": rng.choice(tokens)}
                    )
                async with request as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{endpoint}: HTTP {response.status}")
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return latencies


def summary(latencies: list[float], duration_s: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "rps": round(len(ordered) / duration_s, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


def main() -> int:
    with scratch_database("api") as (name, url):
        return _run(name, url)


def _run(name: str, url: str) -> int:
    programs = []
    try:
        tokens = asyncio.run(seed(url))
        log_dir = Path(os.environ.get("TMPDIR", "/tmp"))
        ours_port, base_port = free_port(), free_port()
        common = {"LOG_LEVEL": "warning", "DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": POOL_MAX}
        ours = start_program(
            "services.api.cli",
            ["api", "--port", str(ours_port)],
            {
                **common,
                "DB_TYPE": "postgres",
                "DATABASE_URL": url,
                "API_TOKEN_HASH_KEY": HASH_KEY,
                "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                "API_RATE_LIMIT_MEMBER": UNREACHED_RATE,
                "API_RATE_LIMIT_SOURCE": UNREACHED_RATE,
                "DOMOS_DATA_DIR": "/tmp",
                # payments are not exercised; the API only needs credentials to start
                "YOOKASSA_SHOP_ID": "bench",
                "YOOKASSA_SECRET_KEY": "bench",
            },
            "/health",
            log_dir / f"{name}_ours.log",
            ours_port,
        )
        programs.append(ours)
        baseline = _start_baseline(url, base_port, log_dir / f"{name}_baseline.log")
        programs.append(baseline)

        targets = {"ours": ours.base, "baseline": baseline.base}
        samples: dict[tuple[str, str], list[float]] = {}
        for endpoint in ("verify", "status"):
            for base in targets.values():
                asyncio.run(load(base, endpoint, tokens, WARMUP_S))
            for _ in range(ROUNDS):
                for target, base in targets.items():
                    latencies = asyncio.run(load(base, endpoint, tokens, ROUND_S))
                    samples.setdefault((target, endpoint), []).extend(latencies)

        duration = ROUND_S * ROUNDS
        results: dict[str, Any] = {}
        ratios = []
        for endpoint in ("verify", "status"):
            ours_s = summary(samples[("ours", endpoint)], duration)
            base_s = summary(samples[("baseline", endpoint)], duration)
            ratio = ours_s["rps"] / base_s["rps"]
            ratios.append(ratio)
            results[endpoint] = {"ours": ours_s, "baseline": base_s, "ratio": round(ratio, 3)}
            print(f"{endpoint}: ours {ours_s}  baseline {base_s}  ratio {ratio:.3f}")
        ratio = math.exp(statistics.fmean(math.log(r) for r in ratios))
        print(
            json.dumps(
                {
                    "benchmark": "api",
                    "concurrency": CONCURRENCY,
                    "duration_s_per_target": duration,
                    "token_verify": results["verify"],
                    "subscription_status": results["status"],
                    "requests_per_s": {
                        "ours": round(sum(results[e]["ours"]["rps"] for e in results) / 2, 1),
                        "baseline": round(
                            sum(results[e]["baseline"]["rps"] for e in results) / 2, 1
                        ),
                    },
                    "ratio": round(ratio, 3),
                }
            )
        )
        return 0
    finally:
        for program in programs:
            program.stop()


def _start_baseline(url: str, port: int, log_path: Path) -> Any:
    """uvicorn with the same loop and HTTP parser as `domos api` (uvloop, httptools)."""
    import subprocess

    from tests.integration.api.processes import Program, http

    log_file = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "bench.api.baseline:app",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "BASELINE_DATABASE_URL": url,
            "BASELINE_TOKEN_HASH_KEY": HASH_KEY,
            "BASELINE_POOL_MAX_SIZE": POOL_MAX,
        },
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    log_file.close()
    program = Program(process, f"http://127.0.0.1:{port}", log_path)  # type: ignore[arg-type]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if http("GET", program.base + "/v1/subscriptions/1000000", timeout_s=2)[0] == 200:
                return program
        except OSError:
            time.sleep(0.05)
    program.stop()
    raise SystemExit(f"baseline did not start:\n{program.logs()}")


if __name__ == "__main__":
    sys.exit(main())
