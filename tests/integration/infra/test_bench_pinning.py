"""bench/pinning.py: a benchmark on fewer CPUs pins the server's new backends with it, and
gives every process its CPUs back afterwards."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench import pinning


def _backend_cpus(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return os.sched_getaffinity(row[0])


def test_pinned_runs_the_server_and_this_process_on_the_first_cpus(pg_server_url: str) -> None:
    own = os.sched_getaffinity(0)
    if len(own) < 2:
        pytest.skip("one CPU: nothing to pin apart")
    server = pinning.postmaster()
    server_before = os.sched_getaffinity(server)
    first = {min(own)}
    with pinning.pinned(1):
        assert os.sched_getaffinity(0) == first
        assert os.sched_getaffinity(server) == first
        assert _backend_cpus(pg_server_url) == first  # inherited at fork
    assert os.sched_getaffinity(0) == own
    assert os.sched_getaffinity(server) == server_before
    assert _backend_cpus(pg_server_url) == server_before


def test_pinned_refuses_more_cpus_than_it_may_use() -> None:
    with pytest.raises(SystemExit, match="--cpus must be between"), pinning.pinned(10_000):
        pass
