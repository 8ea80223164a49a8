"""docker-compose.yml, validated statically (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from runtime.cli import COMMAND_OWNERS, build_parser
from runtime.logical_databases import LOGICAL_DATABASES
from runtime.supervision.programs import (
    LISTENER_NAME,
    PRODUCTION_ROLES,
    PROGRAMS,
    by_name,
    roles,
)

_INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
#: Published container port -> the program that listens on it (services' defaults).
SERVICE_PORTS = {"api": 8001, "web": 8002, "botapi": 6000}


def _compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]):
    schema = _compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_schema_validation_catches_a_broken_service(compose: dict[str, Any]):
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["restart_policy"] = "always"  # not a compose key
    schema = _compose_schema()
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(broken))


def test_one_container_per_production_role_and_the_sandbox_under_its_profile(
    role_services: dict[str, dict[str, Any]],
):
    by_role = {
        service["environment"]["DOMOS_ROLE"]: name for name, service in role_services.items()
    }
    assert set(by_role) == {*PRODUCTION_ROLES, "sandbox"}
    # The service is named after its role: Prometheus targets are <role>:<port>.
    assert all(role == name for role, name in by_role.items())
    assert role_services["sandbox"].get("profiles") == ["sandbox"]
    for role in PRODUCTION_ROLES:
        assert not role_services[role].get("profiles"), role


def test_every_role_the_catalogue_runs_has_its_supervisor_directory(
    repo: Path, role_services: dict[str, dict[str, Any]]
):
    catalogue_roles = roles()
    for name, service in role_services.items():
        role = service["environment"]["DOMOS_ROLE"]
        if catalogue_roles.get(role):
            directory = repo / "supervisor" / "roles" / role
            assert directory.is_dir(), f"{name}: no supervisor/roles/{role}"
            assert (directory / f"{LISTENER_NAME}.conf").exists()


def test_only_the_services_still_being_written_lack_programs(
    role_services: dict[str, dict[str, Any]],
):
    # api, web and bot join the catalogue as their programs land; the monitors and the sandbox
    # already run, and no role may lose its programs.
    missing = {
        service["environment"]["DOMOS_ROLE"]
        for service in role_services.values()
        if not roles().get(service["environment"]["DOMOS_ROLE"])
    }
    assert missing <= {"api", "web", "bot"}, missing


def _commands(service: dict[str, Any]) -> list[list[str]]:
    command = service.get("command")
    if command is None:
        return []
    words = shlex.split(command) if isinstance(command, str) else list(command)
    if words[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in re.split(r"&&|;", words[2])]
    return [words]


def test_every_domos_command_in_compose_parses(compose: dict[str, Any]):
    seen = []
    for name, service in compose["services"].items():
        for words in _commands(service):
            if words and words[0] == "domos":
                argv = words[1:]
                assert argv[0] in COMMAND_OWNERS, f"{name}: unknown command domos {argv[0]}"
                build_parser(argv).parse_args(argv)  # exits (fails the test) on a bad argument
                seen.append(argv[0])
    assert {"db", "web"} <= set(seen)


def test_the_roles_wait_for_healthy_postgres_and_finished_migrations(
    compose: dict[str, Any], role_services: dict[str, dict[str, Any]]
):
    services = compose["services"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for role in PRODUCTION_ROLES:
        depends = role_services[role]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", role
        assert depends["postgres"]["condition"] == "service_healthy", role
    for name, service in services.items():
        if name != "migrate":
            assert service.get("restart") in ("unless-stopped", "always"), name


def test_postgres_is_15_alpine_with_pg_isready_and_the_schema_init_script(
    compose: dict[str, Any], repo: Path
):
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:15-bookworm"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    mount = next(v for v in postgres["volumes"] if "/docker-entrypoint-initdb.d" in v)
    init_dir = repo / mount.split(":")[0]
    sql = " ".join(path.read_text() for path in sorted(init_dir.glob("*.sql")))
    created = set(re.findall(r"CREATE SCHEMA IF NOT EXISTS (\w+)", sql))
    assert created == {db.pg_schema for db in LOGICAL_DATABASES.values()}


def test_published_ports_bind_to_loopback(compose: dict[str, Any]):
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str), (name, port)
            assert port.startswith("127.0.0.1:"), (name, port)
            published += 1
    assert published >= 6


def _listen_ports(role: str, environment: dict[str, Any]) -> set[int]:
    ports = set()
    for program in roles().get(role, ()):
        if program.metrics_port is not None:
            ports.add(program.metrics_port)
        if program.name in SERVICE_PORTS:
            ports.add(SERVICE_PORTS[program.name])
        if program.name == "sandbox":
            ports.add(int(environment["SANDBOX_PORT"]))
    return ports


def test_published_ports_are_served_by_the_roles_programs(
    role_services: dict[str, dict[str, Any]],
):
    checked = 0
    for name, service in role_services.items():
        role = service["environment"]["DOMOS_ROLE"]
        if not roles().get(role):
            continue  # see test_only_the_services_still_being_written_lack_programs
        listening = _listen_ports(role, service["environment"])
        for port in service.get("ports", []):
            container_port = int(port.rsplit(":", 1)[1])
            assert container_port in listening, f"{name}: nothing in role {role} on {port}"
            checked += 1
    assert checked >= 1


def test_service_ports_match_the_services_defaults():
    from services.api.settings import DEFAULT_PORT as API_PORT
    from services.botapi.settings import DEFAULT_PORT as BOTAPI_PORT
    from services.web.cli import DEFAULT_PORT as WEB_PORT

    assert SERVICE_PORTS == {"api": API_PORT, "web": WEB_PORT, "botapi": BOTAPI_PORT}


def _worst_stop_s(role: str) -> int:
    """supervisord stops its process groups one after another (by priority), each group's
    programs together: the worst case is the sum of each group's longest stopwaitsecs."""
    listener_stop_s = 5
    groups: dict[str, int] = {}
    for program in roles().get(role, ()):
        groups[program.role] = max(groups.get(program.role, 0), program.stopwaitsecs)
    return listener_stop_s + sum(groups.values())


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert duration, duration
    assert match, duration
    return int(match.group(1) or 0) * 60 + int(match.group(2) or 0)


def test_stop_grace_period_exceeds_the_longest_stop_of_each_role(
    role_services: dict[str, dict[str, Any]],
):
    longest = max(program.stopwaitsecs for program in PROGRAMS)
    for name, service in role_services.items():
        grace_s = _seconds(service["stop_grace_period"])
        assert grace_s > longest, name
        assert grace_s > _worst_stop_s(service["environment"]["DOMOS_ROLE"]), name
    assert _worst_stop_s("monitors") >= by_name()["notifymonitor"].stopwaitsecs


def test_secrets_are_required_not_defaulted(compose_text: str):
    for secret in (
        "POSTGRES_PASSWORD",
        "TELEGRAM_BOT_TOKEN",
        "YOOKASSA_SECRET_KEY",
        "API_ADMIN_KEY",
        "API_TOKEN_HASH_KEY",
        "DJANGO_SECRET_KEY",
        "BOTAPI_SEND_TOKEN",
        "GRAFANA_ADMIN_PASSWORD",
    ):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", compose_text)
        assert uses, secret
        assert all(use.startswith(":?") for use in uses), (secret, uses)


def test_data_and_backups_live_on_named_volumes(
    compose: dict[str, Any], role_services: dict[str, dict[str, Any]]
):
    named = set(compose["volumes"])
    postgres_volumes = compose["services"]["postgres"]["volumes"]
    assert any(v.startswith("pgdata:/var/lib/postgresql/data") for v in postgres_volumes)
    for name, service in role_services.items():
        targets = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert targets["/backup"] in named, name
        assert targets["/app/var/data"] in named, name


def test_every_interpolated_variable_is_in_env_example_and_nothing_more(
    compose_text: str, env_example: dict[str, str]
):
    interpolated = set(_INTERPOLATION.findall(compose_text))
    assert interpolated - set(env_example) == set()
    # Compose's own settings: the project name (the file has no top-level `name:`, which
    # docker-compose v1 refuses) and the optional services started.
    compose_settings = {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"}
    assert set(env_example) - interpolated == compose_settings, "dead entries in .env.example"
    # Required values are left empty in the example, so nobody runs with a sample secret.
    for name in interpolated:
        if re.search(r"\$\{" + name + r":\?", compose_text):
            assert env_example[name] == "", name


def test_every_variable_given_to_a_domos_container_is_read_by_the_code(
    compose: dict[str, Any], role_services: dict[str, dict[str, Any]], runtime_env: set[str]
):
    given = set()
    for name in [*role_services, "migrate"]:
        given |= set(compose["services"][name]["environment"])
    assert given - runtime_env == set()


def test_supervisord_finds_every_variable_it_expands_in_each_role(
    role_services: dict[str, dict[str, Any]], dockerfile: Any, supervisor_env: Any
):
    image_env = set(dockerfile.envs)
    for name, service in role_services.items():
        role = service["environment"]["DOMOS_ROLE"]
        available = image_env | set(service["environment"])
        missing = supervisor_env(role) - available
        assert not missing, f"{name}: supervisord needs {sorted(missing)}"
    assert "SANDBOX_YOOKASSA_WEBHOOK_URL" in supervisor_env("sandbox")


def test_migrate_is_a_one_shot_of_the_same_image(compose: dict[str, Any]):
    services = compose["services"]
    assert services["migrate"]["image"] == services["api"]["image"]
    assert services["migrate"]["build"] == services["api"]["build"]
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_grafana_mounts_the_provisioning_and_dashboards(compose: dict[str, Any], repo: Path):
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    for source in mounts:
        if source.startswith("./"):
            assert (repo / source).is_dir(), source
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = (repo / "grafana/provisioning/dashboards/domos.yml").read_text()
    assert mounts["./grafana/dashboards"] in provider
    prometheus_mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    assert prometheus_mounts["./prometheus"] == "/etc/prometheus"


def test_docker_compose_v1_accepts_the_file(compose: dict[str, Any]) -> None:
    """Debian's Compose (v1, and many LTS systems') refuses a top-level `name:`."""
    assert "name" not in compose


def test_an_image_without_an_offline_stand_in_is_optional(compose: dict[str, Any], repo: Path):
    """`up` pulls every enabled service's image first: Grafana's, which only a registry has,
    stopped an air-gapped `docker-compose up -d` before anything started. It is behind a
    profile that .env.example enables and an offline operator empties."""
    stand_ins = (repo / "docker/base-images/build.sh").read_text()
    registry_only = {
        name
        for name, service in compose["services"].items()
        if "image" in service and "${" not in service["image"] and service["image"] not in stand_ins
    }
    assert registry_only == {"grafana"}
    assert compose["services"]["grafana"]["profiles"] == ["grafana"]
    env = dict(
        line.split("=", 1)
        for line in (repo / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"].split(",") == ["grafana"]
