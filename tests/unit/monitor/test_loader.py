"""Resolving `domos monitor NAME` to a Monitor subclass."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.errors import MonitorError
from runtime.monitor import Monitor
from runtime.monitor.loader import known_monitors, load_monitor

GOOD = """
from runtime.monitor import Monitor

class {cls}(Monitor):
    name = "{name}"
    interval_s = 5.0

    async def tick(self) -> int:
        return 0

MONITOR = {cls}
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"pkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "alpha.py").write_text(GOOD.format(cls="Alpha", name="alpha"))
    (root / "beta.py").write_text(GOOD.format(cls="Beta", name="beta"))
    (root / "helpers.py").write_text("VALUE = 1\n")  # not a monitor
    (root / "_private.py").write_text(GOOD.format(cls="Hidden", name="hidden"))
    (root / "broken.py").write_text("import does_not_exist_anywhere\n")
    (root / "wrong.py").write_text("MONITOR = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_load_monitor_by_name(package: str) -> None:
    cls = load_monitor("alpha", package)
    assert issubclass(cls, Monitor)
    assert cls.name == "alpha"


def test_known_monitors_lists_only_modules_exposing_a_monitor(package: str) -> None:
    assert known_monitors(package) == ["alpha", "beta"]


@pytest.mark.parametrize("name", ["nope", "../etc", "a.b"])
def test_unknown_name_lists_the_known_monitors(package: str, name: str) -> None:
    with pytest.raises(MonitorError, match="known monitors: alpha, beta"):
        load_monitor(name, package)


def test_module_without_monitor_is_a_clear_error(package: str) -> None:
    with pytest.raises(MonitorError, match="does not expose a Monitor subclass as MONITOR"):
        load_monitor("wrong", package)


def test_a_broken_monitor_module_keeps_its_own_error(package: str) -> None:
    with pytest.raises(ModuleNotFoundError, match="does_not_exist_anywhere"):
        load_monitor("broken", package)


def test_missing_package_is_reported(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="no monitors found in package 'no_such_pkg_x'"):
        load_monitor("alpha", "no_such_pkg_x")


def test_cli_unknown_monitor_exits_2_with_the_list(
    package: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DOMOS_MONITOR_PACKAGE", package)
    assert main(["monitor", "gamma"]) == 2
    err = capsys.readouterr().err
    assert "unknown monitor 'gamma'" in err
    assert "alpha, beta" in err


def test_cli_list(
    package: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["monitor", "--list", "--package", package]) == 0
    assert capsys.readouterr().out.split() == ["alpha", "beta"]
