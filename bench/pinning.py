"""Run a benchmark on fewer CPUs than the machine has: the benchmark, the tools it starts and
the PostgreSQL server they use, all on the same first N CPUs.

How a tool's time changes with the CPUs it gets says what more CPUs would give: a pipeline of
two processes gains nothing from a third CPU, a tool that splits its work over workers does.
The server's processes are pinned through the postmaster, whose affinity every new backend
inherits at fork; so the server must run on this machine, under a user this process may
re-pin (root, or the server's own). Every affinity is restored afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.scratch import SERVER_URL


def postmaster() -> int:
    """The server's postmaster: the parent of a backend of ours."""
    # Read while the connection is open: its backend exits with it.
    with psycopg.connect(SERVER_URL) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        status = Path(f"/proc/{row[0]}/status")
        try:
            text = status.read_text()
        except FileNotFoundError:
            raise SystemExit(
                f"--cpus: the server of {SERVER_URL} does not run on this machine"
            ) from None
    for line in text.splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise SystemExit(f"--cpus: no parent in {status}")


def _server_processes() -> list[int]:
    parent = postmaster()
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [parent, *map(int, children)]


@contextmanager
def pinned(cpus: int | None) -> Iterator[None]:
    """This process (and so what it starts) and the server on the first `cpus` CPUs of those
    this process may use; nothing changes when `cpus` is None."""
    if cpus is None:
        yield
        return
    own = os.sched_getaffinity(0)
    if not 1 <= cpus <= len(own):
        raise SystemExit(f"--cpus must be between 1 and {len(own)}")
    chosen = set(sorted(own)[:cpus])
    saved: dict[int, set[int]] = {}
    try:
        for pid in _server_processes():
            try:
                saved[pid] = os.sched_getaffinity(pid)
                os.sched_setaffinity(pid, chosen)
            except ProcessLookupError:
                continue  # a backend that ended meanwhile
            except PermissionError as exc:
                raise SystemExit(
                    f"--cpus: may not pin the server's process {pid} ({exc}): run as root "
                    "or as the server's user"
                ) from exc
        os.sched_setaffinity(0, chosen)
        yield
    finally:
        os.sched_setaffinity(0, own)
        for pid, mask in saved.items():
            try:
                os.sched_setaffinity(pid, mask)
            except ProcessLookupError:
                continue
