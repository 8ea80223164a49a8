"""The migration's worker processes, started before the parent has imported what it plans with.

Not fork: the parent holds open database connections that children must not share. A fork server
is a fresh process that imports the workers' modules once (pyarrow, psycopg, the ADBC drivers:
about a core-second) and forks every worker from there. `start_pool` launches it in a thread at
once, so those imports overlap the parent's own (half a second) and its snapshots.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: What the worker processes run: imported once by the fork server.
#: Not psycopg and structlog: the fast path needs neither (python_copy.py imports them where a
#: chunk needs it), and the parent has them already.
WORKER_MODULES = [
    "runtime.migrate.arrow_copy",
    "runtime.migrate.copier",
    "runtime.migrate.verify",
    "runtime.migrate.integrity_gate",
]
#: How much lower the workers' CPU priority is than the parent's. The parent's integrity checks
#: are what every commit waits for (integrity_gate.py): at equal priority, chunks finished early
#: sat idle at the gate while the check shared the cores with the chunks still reading.
WORKER_NICENESS = 10


def _context() -> Any:
    # numpy's OpenBLAS starts a thread per core that spins after the import (0.09 core-s of the
    # fork server's start-up, while the snapshots wait for a core): the workers call no BLAS.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


def start_pool(jobs: int) -> ProcessPoolExecutor:
    pool = ProcessPoolExecutor(
        max_workers=max(1, jobs),
        mp_context=_context(),
        initializer=os.nice,
        initargs=(WORKER_NICENESS,),
    )
    # Submitting waits for the fork server's imports: in a thread, the caller goes on.
    threading.Thread(target=pool.submit, args=(warm_up,), daemon=True).start()
    return pool


class Checker:
    """One process, at the parent's priority, for the snapshots' integrity checks
    (integrity_gate.check): it has the ADBC SQLite driver loaded, whose SQLite is newer and
    faster at the check than the sqlite3 module's.

    `submit` returns at once: starting the process waits for the fork server's imports, so a
    thread hands the work over and waits for its result."""

    def __init__(self) -> None:
        self.process = ProcessPoolExecutor(max_workers=1, mp_context=_context())
        self.waiter = ThreadPoolExecutor(max_workers=1)

    def submit(self, function: Callable[[Path], T], path: Path) -> Future[T]:
        return self.waiter.submit(self._check, function, path)

    def _check(self, function: Callable[[Path], T], path: Path) -> T:
        """In the waiting thread. A check reads its snapshot and writes nothing: if its process
        dies under it (killed from outside), a new process runs it once more."""
        try:
            return self.process.submit(function, path).result()
        except BrokenProcessPool:
            import structlog  # not at the top: the fork server starts before its import

            log = structlog.get_logger("domos.migrate")
            log.warning("integrity_check_process_died", snapshot=str(path))
            self.process = ProcessPoolExecutor(max_workers=1, mp_context=_context())
            return self.process.submit(function, path).result()

    def shutdown(self) -> None:
        """Lets the submitted checks finish; returns at once (the process is shut down by the
        waiting thread, after it has handed over every check)."""
        self.waiter.submit(lambda: self.process.shutdown(wait=False))
        self.waiter.shutdown(wait=False)


def warm_up() -> None:
    """A worker's first task: it exists, imported, before the first chunk is ready."""
