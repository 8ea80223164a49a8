"""How the suite runs on several pytest-xdist workers (`make test`: `-n 3`).

Work is handed out a test module at a time (module-scoped fixtures such as a bot process are set
up once), except that the modules of a directory sharing something machine-wide form one unit,
run by one worker one after another. Without xdist (`-p no:xdist`, or a plain `pytest path`)
nothing here changes a run.

The container tests' image build starts once per session, in the process that starts the
session, so it overlaps the other tests (tests/acceptance/containers/compose_stack.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CONTAINERS = TESTS / "acceptance" / "containers"

#: Directory -> the unit its modules run in, with the resource they share.
SERIAL_GROUPS = {
    # `domos run` and the stacks bind the fixed ports 8001, 8002, 6000 and the metrics ports.
    TESTS / "acceptance" / "stack": "fixed-ports",
    TESTS / "acceptance" / "supervision": "fixed-ports",
    TESTS / "integration" / "infra": "fixed-ports",
    # One compose project at a time: the engine's CPU and the image build are shared.
    CONTAINERS: "docker",
    # The package-scoped community (about a minute of programs per backend) is built once.
    TESTS / "browser": "browser",
}


def unit_of(nodeid: str) -> str:
    """The work unit of a test: its directory's group, else its module."""
    module = nodeid.split("::", 1)[0]
    path = ROOT / module
    for directory, group in SERIAL_GROUPS.items():
        if path.is_relative_to(directory):
            return group
    return module


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    # xdist's loadgroup marks no longer reach its scheduler under pytest 9 (it rewrites
    # item._nodeid, which pytest 9 no longer reads), so the units are drawn here instead, the
    # way xdist's own LoadFileScheduling does it: by overriding _split_scope.
    from xdist.scheduler import LoadScopeScheduling

    class DirectoryUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return DirectoryUnits(config, log)


def selects(config: pytest.Config, directory: Path) -> bool:
    """Whether the session's paths include tests of `directory`."""
    args = config.args or [str(TESTS)]
    for arg in args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path.is_relative_to(directory) or directory.is_relative_to(path):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    # tryfirst: before xdist starts its workers, which then inherit the build's directory.
    config = session.config
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    if not selects(config, CONTAINERS):
        return
    from tests.acceptance.containers.compose_stack import engine_answers, start_image_build

    if engine_answers():
        start_image_build()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    from tests.acceptance.containers.compose_stack import reap_image_build

    reap_image_build()
