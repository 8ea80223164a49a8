"""The integrity check's process (workers.Checker) dying under a check."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from runtime.migrate.workers import Checker


def test_the_checker_still_checks_after_a_process_died() -> None:
    """A check whose process dies in its new one too fails (BrokenProcessPool, never a hang);
    the next check runs in a new process."""
    checker = Checker()
    try:
        with pytest.raises(BrokenProcessPool):
            checker.submit(os._exit, 1).result(timeout=60)  # type: ignore[arg-type]
        assert checker.submit(abs, -3).result(timeout=60) == 3  # type: ignore[arg-type]
    finally:
        checker.shutdown()
