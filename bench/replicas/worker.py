"""One parse_messages replica for bench/replicas: its own process, its own pool, its own owner id.

Opens the database and sets the monitor up, prints `ready`, waits for `go` on stdin, then ticks
back to back until a tick finds nothing (the runner would wait its 10 s interval between ticks;
the benchmark measures the work, not the interval). Prints one JSON line: items, ticks, seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

from monitors.parse_messages import ParseMessages
from runtime.config import Settings
from runtime.db import async_database
from runtime.logging import configure_logging
from runtime.monitor import MonitorContext, SystemClock, build_config


async def main(owner: str) -> None:
    settings = Settings.from_env(os.environ)
    configure_logging(settings, program="bench-replicas")  # stderr: stdout is the protocol
    async with async_database(settings) as db:
        ctx = MonitorContext(
            settings=settings,
            db=db,
            log=structlog.get_logger("monitors.parse_messages").bind(monitor=ParseMessages.name),
            clock=SystemClock(),
            owner=owner,
            stop_event=asyncio.Event(),
            config=build_config(ParseMessages, os.environ, settings),
        )
        monitor = ParseMessages(ctx)
        await monitor.setup()
        try:
            await db.fetchval(
                "SELECT 1"
            )  # the pool holds a live connection before the clock starts
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            started = time.monotonic()
            cpu_started = time.process_time()
            items = ticks = 0
            while True:
                done = await monitor.tick()
                ticks += 1
                if done == 0:
                    break
                items += done
            elapsed = time.monotonic() - started
            cpu_s = time.process_time() - cpu_started
        finally:
            await monitor.teardown()
    print(
        json.dumps(
            {
                "owner": owner,
                "items": items,
                "ticks": ticks,
                "seconds": round(elapsed, 3),
                "cpu_s": round(cpu_s, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
