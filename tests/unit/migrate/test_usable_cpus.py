"""Workers follow the CPUs the process may use (a container's cpuset, `taskset`), not the
machine's count."""

from __future__ import annotations

import os

import pytest

from runtime.migrate import cli, sizing


def _options(argv: list[str]) -> object:
    import argparse

    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    cli.register(subparsers)
    return parser.parse_args(["migrate", *argv])


def test_usable_cpus_is_the_affinity_not_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert sizing.usable_cpus() == 1


def test_default_jobs_follow_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert _options([]).jobs == 2  # type: ignore[attr-defined]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert _options([]).jobs == 4  # type: ignore[attr-defined]


def test_without_affinity_the_machine_count_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert sizing.usable_cpus() == 3
