"""Shared readings of the repository's container and observability files."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

REPO = Path(__file__).resolve().parents[3]
#: The Python packages of the image: what the scans of the code read.
CODE_PACKAGES = ("runtime", "payments", "monitors", "services")
#: Compose services that run the domos image under supervisord (one role each).
INFRA_SERVICES = ("postgres", "migrate", "prometheus", "grafana")
_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
_SUPERVISOR_ENV = re.compile(r"%\(ENV_([A-Z0-9_]+)\)s")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="session")
def compose_text() -> str:
    return (REPO / "docker-compose.yml").read_text()


@pytest.fixture(scope="session")
def role_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose service name -> definition, for the services that run a domos role."""
    return {
        name: service
        for name, service in compose["services"].items()
        if "DOMOS_ROLE" in (service.get("environment") or {})
    }


@pytest.fixture(scope="session")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(REPO / "docker" / "Dockerfile"))


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def runtime_env_names() -> set[str]:
    """Every environment variable the code can read.

    Found statically: string literals shaped like an environment variable name in the Python
    packages (the code reads them through `Env`, `os.environ` or settings tables), and the
    `%(ENV_X)s` expansions of the supervisord configuration.
    """
    names: set[str] = set()
    for package in CODE_PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
                if is_text and _ENV_NAME.match(node.value):
                    names.add(node.value)
    for path in [REPO / "supervisord.conf", *(REPO / "supervisor").rglob("*.conf")]:
        names.update(_SUPERVISOR_ENV.findall(path.read_text()))
    return names


@pytest.fixture(scope="session")
def runtime_env() -> set[str]:
    return runtime_env_names()


def supervisor_env_needed(role: str) -> set[str]:
    """Variables supervisord expands when it starts `role` (its config plus the role's files)."""
    texts = [(REPO / "supervisord.conf").read_text()]
    texts += [path.read_text() for path in sorted((REPO / "supervisor/roles" / role).glob("*"))]
    return {name for text in texts for name in _SUPERVISOR_ENV.findall(text)}


@pytest.fixture(scope="session")
def supervisor_env() -> Any:
    return supervisor_env_needed
