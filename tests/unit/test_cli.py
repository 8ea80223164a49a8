from __future__ import annotations

import argparse
import importlib

import pytest

from runtime.cli import COMMAND_MODULES, COMMAND_OWNERS, build_parser, main


def test_every_command_is_registered_by_the_module_that_owns_it():
    registered: dict[str, str] = {}
    for module_name in COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        subparsers = parser.add_subparsers(dest="command")
        importlib.import_module(module_name).register(subparsers)
        for command in subparsers.choices:
            registered[command] = module_name
    assert registered == COMMAND_OWNERS


def test_a_command_parses_with_only_its_own_module():
    args = build_parser(["supervisor", "render", "--check"]).parse_args(
        ["supervisor", "render", "--check"]
    )
    assert args.command == "supervisor"
    assert callable(args.handler)


def test_config_errors_become_one_line_and_exit_code_78(capsys, tmp_path):
    # EX_CONFIG: supervisord leaves a program that exits with it down (runtime/supervision).
    code = main(["run", "--config", str(tmp_path / "missing.conf")])
    assert code == 78
    err = capsys.readouterr().err
    assert err.startswith("domos run: error: --config: no supervisord configuration at")


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
