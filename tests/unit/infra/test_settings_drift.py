"""The programs' environment variables against docker-compose.yml, .env.example and README.md.

The variables the code reads are found by scanning it (calls of `Env`'s readers, `os.environ.get`
and the web settings' `_flag`/`_list` with a literal name or a module constant holding one), so a
setting added in code fails here until it is passed by compose or listed below with a reason.
Compose defaults are checked by parsing them the way the code does: the settings built from an
environment lacking the variable must equal those built with the compose default.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from monitors.decisions.useful import UsefulRules
from runtime.config import Env, Settings
from runtime.logical_databases import LOGICAL_DATABASES
from runtime.monitor import build_config
from runtime.monitor.loader import load_monitor
from services.api.settings import ApiSettings
from services.bot.config import BotSettings
from services.botapi.settings import BotApiSettings
from tests.unit.infra.conftest import CODE_PACKAGES, REPO

_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")
_ENV_METHODS = {"text", "integer", "number", "choice", "url", "secret", "required"}
_READERS = _ENV_METHODS | {"get", "getenv", "_flag", "_list"}
_DEFAULTED = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}$")
#: Source directory -> the compose service whose programs it holds; runtime/ runs everywhere.
_SERVICE_OF = {
    "monitors": "monitors",
    "services/api": "api",
    "services/bot": "bot",
    "services/botapi": "bot",
    "services/web": "web",
    "services/sandbox": "sandbox",
}

#: Set by the image, supervisord or the programs themselves: neither configured nor documented.
SET_BY_RUNTIME = {
    "DOMOS_ROLE": "compose sets it per container, `domos run` to embedded",
    "DOMOS_PROGRAM": "supervisord sets it per program (runtime.supervision.programs)",
    "METRICS_PORT": "supervisord sets it per program (runtime.supervision.programs)",
    "PROMETHEUS_MULTIPROC_DIR": "`domos web`/`domos botapi` set it before gunicorn forks",
    "PATH": "the image's",
    "DOMOS_MONITOR_PACKAGE": "tests point `domos monitor` at their own monitors",
    "DOMOS_TEST_PAUSE_AT": "test hook (monitors.pause)",
    "DOMOS_TEST_PAUSE_FILE": "test hook (monitors.pause)",
}
#: Read by the code and documented in README.md, but deliberately not passed by compose.
NOT_FOR_PRODUCTION = {
    "DATABASE_URL": "compose builds the URL from POSTGRES_*",
    "SQLITE_BUSY_TIMEOUT_S": "SQLite only; the containers run PostgreSQL",
    **{db.path_variable: "SQLite only" for db in LOGICAL_DATABASES.values()},
    "DOMOS_CLOCK_OFFSET_S": "moves the monitors' clock: tests and the demo only",
    "DJANGO_DEBUG": "debug pages leak tracebacks and settings",
    "LOG_FORMAT": "containers log JSON lines (auto: a program's stdout is supervisord's pipe)",
    "API_PORT": "fixed: compose publishes it and Prometheus scrapes it",
    "BOTAPI_PORT": "fixed: compose publishes it and Prometheus scrapes it",
    "WEB_PORT": "fixed: compose publishes it and Prometheus scrapes it",
    "SANDBOX_HOST": "the sandbox binds DOMOS_BIND_HOST through its supervisord command",
    "SANDBOX_PUBLIC_URL": "the sandbox is a local stand-in, not production",
    "AUDIO_DIR": "its default is on the data volume (DOMOS_DATA_DIR/audio)",
    "WEB_STATIC_ROOT": "its default is on the data volume (DOMOS_DATA_DIR/web/static)",
    "WEB_STAFF_USERNAME": "`domos web createstaff`, given with `docker compose exec -e`",
    "WEB_STAFF_EMAIL": "`domos web createstaff`, given with `docker compose exec -e`",
    "WEB_STAFF_PASSWORD": "`domos web createstaff`, given with `docker compose exec -e`",
}
#: Compose defaults that differ from the code's on purpose.
DIFFERENT_IN_PRODUCTION = {
    "POSTGRES_USER": "the compose postgres service creates the `domos` role",
    "WEB_ALLOWED_HOSTS": "the container is reached over IPv4 only",
    "BOTAPI_WEBHOOK_ALLOWLIST": "production hears YooKassa only; `domos run` hears its sandbox",
    "BOTAPI_TRUSTED_PROXIES": "in compose, requests arrive through Docker's bridge gateway",
    "API_TRUSTED_PROXIES": "in compose, requests arrive through Docker's bridge gateway",
}

#: Settings objects built from an environment mapping: compared whole, default against compose.
MONITORS_WITH_SETTINGS = (
    "ban_monitor",
    "eventsmonitor",
    "monthly_anket",
    "notifymonitor",
    "parse_messages",
    "payment_monitor",
    "recurrent_payments",
    "tsmonitor",
)


def _monitor_config(name: str) -> Callable[[Mapping[str, str]], Any]:
    monitor_cls = load_monitor(name)
    return lambda environ: build_config(monitor_cls, environ, Settings.from_env(environ))


BUILDERS: dict[str, Callable[[Mapping[str, str]], Any]] = {
    "runtime": Settings.from_env,
    **{name: _monitor_config(name) for name in MONITORS_WITH_SETTINGS},
    "useful": UsefulRules.from_env,
    "api": ApiSettings.from_env,
    "bot": BotSettings.from_env,
    "botapi": BotApiSettings.from_env,
}

#: Builder -> the compose service that runs its program (the monitors' builders: monitors).
_BUILDER_SERVICE = {
    **{label: "monitors" for label in BUILDERS if label != "runtime"},
    "api": "api",
    "bot": "bot",
    "botapi": "bot",
}


@dataclass(frozen=True)
class Read:
    """One place the code reads a variable."""

    name: str
    path: Path
    line: int
    reader: str
    call: ast.Call

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def service(self) -> str | None:
        relative = self.path.relative_to(REPO).as_posix()
        matches = [prefix for prefix in _SERVICE_OF if relative.startswith(prefix + "/")]
        return _SERVICE_OF[max(matches, key=len)] if matches else None


def _module_constants(trees: dict[Path, ast.Module]) -> dict[str, str]:
    """Module-level `NAME = "ENV_VARIABLE"` constants of every file (RUN_DIR_VARIABLE, ...)."""
    constants = {}
    for tree in trees.values():
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                        constants[target.id] = node.value.value
    return constants


def code_reads() -> list[Read]:
    trees = {
        path: ast.parse(path.read_text())
        for package in CODE_PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }
    constants = _module_constants(trees)
    reads = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            reader = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if reader not in _READERS:
                continue
            first = node.args[0]
            name = first.value if isinstance(first, ast.Constant) else None
            if isinstance(first, ast.Name):
                name = constants.get(first.id)
            if isinstance(name, str) and _NAME.match(name):
                reads.append(Read(name, path, node.lineno, reader, node))
    # Read through a name the scan cannot follow: LogicalDatabase.path_variable, and the
    # `--password-env` argument of `domos web createstaff`.
    indirect = [(db.path_variable, "runtime/config.py") for db in LOGICAL_DATABASES.values()]
    indirect.append(("WEB_STAFF_PASSWORD", "services/web/cli.py"))
    for name, path in indirect:
        reads.append(Read(name, REPO / path, 0, "indirect", ast.Call(ast.Name("x"), [], [])))
    return reads


@pytest.fixture(scope="module")
def reads() -> list[Read]:
    return code_reads()


@pytest.fixture(scope="module")
def compose_defaults(role_services: dict[str, dict[str, Any]], compose: dict[str, Any]):
    """Variable -> its `${VAR:-default}` default, for the variables given to domos containers."""
    defaults: dict[str, str] = {}
    for service in [*role_services.values(), compose["services"]["migrate"]]:
        for key, value in service["environment"].items():
            match = _DEFAULTED.match(str(value))
            if match and match.group(1) == key:
                assert defaults.setdefault(key, match.group(2)) == match.group(2), key
    return defaults


def _given(service: dict[str, Any], dockerfile: Any) -> set[str]:
    return set(service["environment"]) | set(dockerfile.envs)


def test_the_scan_finds_the_known_reads(reads: list[Read]):
    names = {read.name for read in reads}
    # One per kind of read: Env calls, a constant's name, os.environ.get, the web helpers.
    assert {"NOTIFY_GLOBAL_PER_S", "DOMOS_CLOCK_OFFSET_S", "BOTAPI_WORKERS", "WEB_WORKERS"} <= names
    assert {"WEB_SECURE_COOKIES", "MAIN_DB_PATH", "PAYMENT_KEY_WINDOW_H"} <= names
    assert len(names) > 90


def test_every_variable_read_is_given_by_compose_or_listed_with_a_reason(
    reads: list[Read], role_services: dict[str, dict[str, Any]], dockerfile: Any
):
    given = set().union(*(_given(service, dockerfile) for service in role_services.values()))
    names = {read.name for read in reads}
    unaccounted = names - given - set(SET_BY_RUNTIME) - set(NOT_FOR_PRODUCTION)
    assert not unaccounted, (
        f"{sorted(unaccounted)}: pass them in docker-compose.yml (and .env.example, README.md) "
        "or list them in NOT_FOR_PRODUCTION with the reason"
    )
    listed = set(SET_BY_RUNTIME) | set(NOT_FOR_PRODUCTION)
    assert listed <= names, f"no longer read: {sorted(listed - names)}"
    assert not set(NOT_FOR_PRODUCTION) & given, "given by compose yet listed as not for production"


def test_each_variable_reaches_the_container_of_the_program_reading_it(
    reads: list[Read], role_services: dict[str, dict[str, Any]], dockerfile: Any
):
    exempt = set(SET_BY_RUNTIME) | set(NOT_FOR_PRODUCTION)
    missing = []
    for read in reads:
        if read.name in exempt:
            continue
        services = [read.service] if read.service else list(role_services)
        if read.path.is_relative_to(REPO / "payments"):
            # Shared by several programs: the containers of the settings that read it.
            services = sorted({_BUILDER_SERVICE[label] for label in _reading_builders(read.name)})
            assert services, f"{read.name} ({read.where}) is read by no settings builder"
        for service in services:
            if read.name not in _given(role_services[service], dockerfile):
                missing.append(f"{read.name} ({read.where}) not given to {service}")
    assert not missing, "\n".join(missing)


def test_every_variable_read_is_documented_in_the_readme(reads: list[Read]):
    readme = (REPO / "README.md").read_text()
    configuration = readme[readme.index("## Configuration") :]
    undocumented = {
        read.name
        for read in reads
        if read.name not in SET_BY_RUNTIME and f"`{read.name}`" not in configuration
    }
    assert not undocumented, f"README.md, Configuration: document {sorted(undocumented)}"


def test_env_example_holds_the_compose_defaults(
    compose_defaults: dict[str, str], env_example: dict[str, str]
):
    assert len(compose_defaults) > 50
    for name, default in compose_defaults.items():
        assert env_example[name] == default, name


def _reading_builders(name: str) -> list[str]:
    """The BUILDERS whose settings read `name` (found by recording what they look up)."""

    class Recording(dict[str, str]):
        def __init__(self) -> None:
            super().__init__()
            self.asked: set[str] = set()

        def get(self, key: str, default: Any = None) -> Any:
            self.asked.add(key)
            return super().get(key, default)

    found = []
    for label, build in BUILDERS.items():
        environ = Recording()
        build(environ)
        if name in environ.asked:
            found.append(label)
    return found


def _literal(node: ast.expr, read: Read) -> Any:
    """A default or keyword argument's value, evaluated in its module (DEFAULT_PORT, ...)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        relative = read.path.relative_to(REPO).with_suffix("")
        module = importlib.import_module(".".join(relative.parts))
        return eval(compile(ast.Expression(node), str(read.path), "eval"), vars(module))


def _parsed_equal(read: Read, value: str) -> bool | None:
    """Does the code, at this read, take `value` as it takes the variable's absence?

    None when there is no default to compare (a presence check, an indirect read) or it is not
    a module-level expression: a builder must then cover the variable.
    """
    call = read.call
    without_default = len(call.args) < 2 and read.reader in ("get", "getenv", "text")
    if read.reader == "indirect" or without_default:
        return None  # no default here: the code applies its own to the None it gets
    try:
        args = [_literal(arg, read) for arg in call.args[1:]]
        kwargs = {kw.arg: _literal(kw.value, read) for kw in call.keywords if kw.arg}
    except NameError:
        return None
    if read.reader in _ENV_METHODS:
        method = getattr(Env, read.reader)
        absent = method(Env({}), read.name, *args, **kwargs)
        return bool(method(Env({read.name: value}), read.name, *args, **kwargs) == absent)
    if read.reader in ("get", "getenv"):
        return str(args[0]) == value if args else None
    if read.reader == "_flag":  # services.web.settings: true/1/yes
        return (value.strip().lower() in ("true", "1", "yes")) == bool(args[0])
    if read.reader == "_list":  # services.web.settings: comma-separated
        return [s.strip() for s in value.split(",") if s.strip()] == [
            s.strip() for s in str(args[0]).split(",") if s.strip()
        ]
    raise AssertionError(f"{read.where}: unknown reader {read.reader}")


def test_compose_defaults_are_the_codes(
    reads: list[Read], compose_defaults: dict[str, str], role_services: dict[str, Any]
):
    by_name: dict[str, list[Read]] = {}
    for read in reads:
        by_name.setdefault(read.name, []).append(read)
    checked = 0
    for name, value in sorted(compose_defaults.items()):
        if name not in by_name or name in DIFFERENT_IN_PRODUCTION:
            continue  # not a program's variable (POSTGRES_* of the server), or on purpose
        builders = _reading_builders(name)
        for label in builders:
            build = BUILDERS[label]
            assert build({}) == build({name: value}), f"{name}: {value!r} is not {label}'s default"
        for read in by_name[name]:
            equal = _parsed_equal(read, value)
            if equal is None:
                assert builders, f"{name} ({read.where}): no default to compare; add a builder"
                continue
            assert equal, f"{name}: compose default {value!r} is not the code's ({read.where})"
        checked += 1
    assert checked > 50


def test_deliberate_differences_are_still_different(compose_defaults: dict[str, str]):
    for name in DIFFERENT_IN_PRODUCTION:
        assert name in compose_defaults, f"{name}: no longer defaulted by compose"
    for name in DIFFERENT_IN_PRODUCTION:
        value = compose_defaults[name]
        differs = [read for read in code_reads() if read.name == name]
        assert any(_parsed_equal(read, value) is False for read in differs) or any(
            BUILDERS[label]({}) != BUILDERS[label]({name: value})
            for label in _reading_builders(name)
        ), f"{name}: compose's default is now the code's: drop it from DIFFERENT_IN_PRODUCTION"


def test_a_changed_default_is_caught():
    read = next(read for read in code_reads() if read.name == "NOTIFY_BATCH_SIZE")
    assert _parsed_equal(read, "300") is True
    assert _parsed_equal(read, "301") is False
    assert _parsed_equal(read, "") is True  # empty: the code's default
    notify = BUILDERS["notifymonitor"]
    assert notify({}) != notify({"NOTIFY_GLOBAL_BURST": "2"})
