"""The integrity check's process (workers.Checker) dying under a check."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import pytest

from runtime.migrate.workers import Checker


def test_a_check_whose_process_dies_again_in_its_new_one_fails() -> None:
    """The check runs once more in a new process; where that one dies too, the caller gets
    BrokenProcessPool (the run stops), never a hang."""
    checker = Checker()
    try:
        with pytest.raises(BrokenProcessPool):
            checker.submit(os._exit, 1).result(timeout=60)  # type: ignore[arg-type]
    finally:
        checker.shutdown()


def test_the_checker_still_checks_after_a_process_died() -> None:
    checker = Checker()
    try:
        with pytest.raises(BrokenProcessPool):
            checker.submit(os._exit, 1).result(timeout=60)  # type: ignore[arg-type]
        assert checker.submit(abs, -3).result(timeout=60) == 3  # type: ignore[arg-type]
    finally:
        checker.shutdown()
