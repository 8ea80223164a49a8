"""docker/Dockerfile and its entry point, checked statically."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

from runtime.cli import COMMAND_OWNERS, build_parser
from runtime.supervision.programs import LISTENER_METRICS_PORT, PROGRAMS

#: Variables of Python, pip and the shell, not of domos.
SYSTEM_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}


def _instructions(dockerfile: DockerfileParser) -> list[dict[str, Any]]:
    return [i for i in dockerfile.structure if i["instruction"] != "COMMENT"]


def _stages(dockerfile: DockerfileParser) -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for instruction in _instructions(dockerfile):
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _final(dockerfile: DockerfileParser, name: str) -> list[str]:
    values = [i["value"] for i in _stages(dockerfile)[-1] if i["instruction"] == name]
    assert values, f"no {name} in the final stage"
    return values


def test_multi_stage_build_on_slim_python_311(dockerfile: DockerfileParser):
    stages = _stages(dockerfile)
    names = [stage[0]["value"].split()[-1] for stage in stages]
    assert names == ["builder", "runtime"]
    assert all(image.startswith("python:3.11-slim") for image in dockerfile.parent_images)
    runtime = stages[-1]
    copies = [i["value"] for i in runtime if i["instruction"] == "COPY"]
    assert any(c.startswith("--from=builder /opt/venv") for c in copies)
    # The toolchain stays in the builder.
    final_runs = " ".join(i["value"] for i in runtime if i["instruction"] == "RUN")
    assert "build-essential" not in final_runs
    assert "tini" in final_runs


def test_builds_offline_from_the_lock(dockerfile: DockerfileParser, repo: Path):
    text = (repo / "docker" / "Dockerfile").read_text()
    # A `# syntax=` directive makes BuildKit fetch its frontend image from Docker Hub.
    assert not re.search(r"(?im)^#\s*syntax\s*=", text)
    builder = " ".join(i["value"] for i in _stages(dockerfile)[0] if i["instruction"] == "RUN")
    # Every dependency from the lock, hashes checked; the project itself adds none.
    assert "--require-hashes --only-binary=:all: -r requirements/runtime.lock" in builder
    assert "--no-deps ." in builder
    # The proxy's CA is a build argument of the builder stage only.
    final = " ".join(str(i["value"]) for i in _stages(dockerfile)[-1])
    assert "EXTRA_CA_CERTS" not in final


def test_runs_as_a_non_root_user(dockerfile: DockerfileParser):
    user = _final(dockerfile, "USER")[-1]
    assert user not in ("root", "0")
    assert not user.startswith("0:")
    # The user exists (created in the final stage) and owns what supervisord writes.
    runs = " ".join(_final(dockerfile, "RUN"))
    assert re.search(rf"useradd .*\b{user}\b", runs)
    assert f"chown -R {user}:{user} /app/var" in runs


def test_tini_runs_supervisord_in_the_foreground(dockerfile: DockerfileParser, repo: Path):
    entrypoint = json.loads(_final(dockerfile, "ENTRYPOINT")[-1])
    cmd = json.loads(_final(dockerfile, "CMD")[-1])
    assert entrypoint[:2] == ["tini", "--"]
    assert cmd == ["supervisord", "-c", "/app/supervisord.conf"]
    config = (repo / "supervisord.conf").read_text()
    assert re.search(r"^nodaemon=true$", config, re.MULTILINE)
    copies = " ".join(_final(dockerfile, "COPY"))
    assert "supervisord.conf ./supervisord.conf" in copies
    assert "supervisor ./supervisor" in copies
    assert dockerfile.envs["DOMOS_HOME"] == "/app"


def test_healthcheck_is_a_domos_command(dockerfile: DockerfileParser):
    value = _final(dockerfile, "HEALTHCHECK")[-1]
    options, _, command = value.partition("CMD")
    argv = json.loads(command.strip())
    assert argv[0] == "domos"
    assert argv[1] in COMMAND_OWNERS
    build_parser(argv[1:]).parse_args(argv[1:])
    assert "--start-period=" in options
    assert "--interval=" in options


def _exposed(dockerfile: DockerfileParser) -> set[int]:
    ports: set[int] = set()
    for value in _final(dockerfile, "EXPOSE"):
        for item in value.split():
            low, _, high = item.split("/")[0].partition("-")
            ports.update(range(int(low), int(high or low) + 1))
    return ports


def test_every_catalogue_port_is_exposed(dockerfile: DockerfileParser):
    exposed = _exposed(dockerfile)
    wanted = {p.metrics_port for p in PROGRAMS if p.metrics_port is not None}
    assert wanted | {LISTENER_METRICS_PORT, 8001, 8002, 6000} <= exposed


def test_environment_is_read_by_the_code(dockerfile: DockerfileParser, runtime_env: set[str]):
    names = set(dockerfile.envs) - SYSTEM_ENV
    assert names - runtime_env == set()
    assert {"DOMOS_HOME", "DOMOS_RUN_DIR", "DOMOS_BIND_HOST"} <= names


def test_writable_directories_and_volumes(dockerfile: DockerfileParser):
    volumes = set(json.loads(_final(dockerfile, "VOLUME")[-1]))
    assert {dockerfile.envs["DOMOS_DATA_DIR"], dockerfile.envs["BACKUP_DIR"]} <= volumes
    runs = " ".join(_final(dockerfile, "RUN"))
    for directory in ("/app/var/run", dockerfile.envs["DOMOS_DATA_DIR"], "/backup"):
        assert directory in runs


def test_build_context_keeps_what_the_image_copies(repo: Path, dockerfile: DockerfileParser):
    ignored = {
        line.strip()
        for line in (repo / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", ".env", "var"} <= ignored
    for instruction in _instructions(dockerfile):
        if instruction["instruction"] != "COPY" or instruction["value"].startswith("--from"):
            continue
        sources = [w for w in shlex.split(instruction["value"]) if not w.startswith("--")][:-1]
        for source in sources:
            assert (repo / source).exists(), source
            assert source.split("/")[0] not in ignored, source


def _entrypoint(tmp_path: Path, repo: Path, env: dict[str, str], *command: str):
    home = tmp_path / "app"
    (home / "supervisor/roles/monitors").mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["sh", str(repo / "docker/entrypoint.sh"), *command],
        env={"PATH": "/usr/bin:/bin", "DOMOS_HOME": str(home), **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_entrypoint_refuses_a_missing_or_unknown_role(tmp_path: Path, repo: Path):
    missing = _entrypoint(tmp_path, repo, {}, "supervisord", "-v")
    assert missing.returncode == 64
    assert "DOMOS_ROLE is required" in missing.stderr
    unknown = _entrypoint(tmp_path, repo, {"DOMOS_ROLE": "nope"}, "supervisord", "-v")
    assert unknown.returncode == 64
    assert "unknown DOMOS_ROLE 'nope'" in unknown.stderr


def test_entrypoint_prepares_directories_and_execs_the_command(tmp_path: Path, repo: Path):
    run_dir = tmp_path / "run"
    result = _entrypoint(
        tmp_path, repo, {"DOMOS_ROLE": "monitors", "DOMOS_RUN_DIR": str(run_dir)}, "echo", "ok"
    )
    assert result.returncode == 0
    assert result.stdout == "ok\n"
    assert run_dir.is_dir()
    assert (tmp_path / "app/var/run").is_dir()
    # One-shot commands (the compose migrate service) need no role.
    one_shot = _entrypoint(tmp_path, repo, {}, "true")
    assert one_shot.returncode == 0
