"""The lock files agree with pyproject.toml, and pyproject.toml declares what the code imports.

requirements/runtime.lock (the role image), migrate.lock (the migrate image) and dev.lock (the
venv of `make test`) are made by `make lock`; a pin changed in pyproject.toml without a new lock
would leave the image on the old version.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.unit.infra.conftest import CODE_PACKAGES

REPO = Path(__file__).resolve().parents[3]
LOCKS = {name: REPO / "requirements" / f"{name}.lock" for name in ("runtime", "migrate", "dev")}
#: Which extras each lock holds, besides the main dependencies.
LOCK_EXTRAS = {"runtime": (), "migrate": ("migrate",), "dev": ("migrate", "dev")}
#: The migrate extra's modules: only the migration imports them.
MIGRATE_ONLY_PREFIX = "runtime/migrate/"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==(?P<version>\S+)")


def project() -> dict[str, object]:
    return dict(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])


def declared(extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    meta = project()
    found: dict[str, Requirement] = {}
    lists = [meta["dependencies"], *(meta["optional-dependencies"][e] for e in extras)]  # type: ignore[index]
    for requirements in lists:
        for line in requirements:  # type: ignore[attr-defined]
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) != "domos":  # dev's "domos[migrate]"
                found[canonicalize_name(requirement.name)] = requirement
    return found


def pinned(lock: Path) -> dict[str, str]:
    """name -> version of every `name==version \\` entry; each must carry hashes."""
    pins: dict[str, str] = {}
    entries = re.split(r"\n(?=\S)", lock.read_text())
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            continue
        assert "--hash=sha256:" in entry, f"{lock.name}: {match['name']} without a hash"
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_declared_pin_is_locked_at_its_version(lock: str) -> None:
    pins = pinned(LOCKS[lock])
    for name, requirement in declared(LOCK_EXTRAS[lock]).items():
        assert name in pins, f"{lock}.lock lacks {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name]), (
            f"{lock}.lock has {name}=={pins[name]}, pyproject.toml {requirement}: run `make lock`"
        )


def test_the_locks_agree_with_one_another() -> None:
    runtime, migrate, dev = (pinned(LOCKS[name]) for name in ("runtime", "migrate", "dev"))
    assert runtime.items() <= migrate.items()
    assert migrate.items() <= dev.items()
    # The role image leaves the migration's heavy dependencies out.
    assert not {"pyarrow", "numpy", "adbc-driver-manager"} & runtime.keys()


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(CODE_PACKAGES)


def code_imports() -> dict[str, set[Path]]:
    where: dict[str, set[Path]] = {}
    for package in CODE_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for module in imports_of(path):
                where.setdefault(module, set()).add(path.relative_to(REPO))
    return where


@functools.cache
def all_distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in all_distributions()[module]}


def test_every_imported_package_is_declared() -> None:
    everything = declared(("migrate",))
    undeclared = {
        module: sorted(map(str, paths))
        for module, paths in code_imports().items()
        if not distributions(module) & everything.keys()
    }
    assert undeclared == {}


def test_only_the_migration_imports_the_migrate_extra() -> None:
    extra = {
        canonicalize_name(line.split("==")[0])
        for line in project()["optional-dependencies"]["migrate"]
    }  # type: ignore[index]
    for module, paths in code_imports().items():
        if distributions(module) & extra:
            outside = [p for p in paths if not str(p).startswith(MIGRATE_ONLY_PREFIX)]
            assert outside == [], f"{module} imported outside the migration: {outside}"


def test_migrate_without_its_extra_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.cli import main
    from runtime.migrate import cli as migrate_cli

    monkeypatch.setattr(migrate_cli, "EXTRA_MODULES", ("pyarrow", "domos_not_installed"))
    assert main(["migrate", "verify", "--target", "postgresql://nowhere/x"]) == 2
    error = capsys.readouterr().err
    assert "`migrate` extra (domos_not_installed missing)" in error
    assert "requirements/migrate.lock" in error
