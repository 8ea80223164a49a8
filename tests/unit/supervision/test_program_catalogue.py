from __future__ import annotations

import configparser
import shutil
from pathlib import Path

import pytest

from runtime.supervision.programs import PROGRAMS, differences, roles, write_tree

REPO = Path(__file__).resolve().parents[3]


def test_committed_supervisor_tree_matches_the_catalogue():
    assert differences(REPO / "supervisor") == []


def test_a_hand_edit_or_a_stray_file_is_reported(tmp_path: Path):
    root = tmp_path / "supervisor"
    shutil.copytree(REPO / "supervisor", root, symlinks=True)
    program = PROGRAMS[-1].name
    path = root / "programs" / f"{program}.conf"
    path.write_text(path.read_text().replace("stopwaitsecs=", "stopwaitsecs=1"))
    (root / "roles" / "all" / "extra.conf").write_text("[program:extra]\ncommand=true\n")
    problems = differences(root)
    assert f"programs/{program}.conf: content differs from the catalogue" in problems
    assert "roles/all/extra.conf: not in the catalogue" in problems
    write_tree(root)
    assert differences(root) == []


def test_every_rendered_program_is_a_valid_supervisord_section():
    for program in PROGRAMS:
        text = (REPO / "supervisor" / "programs" / f"{program.name}.conf").read_text()
        parser = configparser.RawConfigParser()
        parser.read_string(text)
        section = parser[f"program:{program.name}"]
        assert section["command"].startswith("domos ")
        assert int(section["stopwaitsecs"]) == program.stopwaitsecs
        assert section["stdout_logfile_maxbytes"] == "0"
        assert section["stopasgroup"] == "true"


def test_roles_partition_production_programs_and_embedded_adds_the_sandbox():
    all_roles = roles()
    production = {p.name for p in all_roles["all"]}
    assert "sandbox" not in production
    assert {p.name for p in all_roles["embedded"]} == production | {"sandbox"}
    single = [
        name
        for role in ("api", "web", "bot", "monitors")
        for name in (p.name for p in all_roles.get(role, ()))
    ]
    assert sorted(single) == sorted(production)
    ports = [p.metrics_port for p in PROGRAMS if p.metrics_port is not None]
    assert len(ports) == len(set(ports)), "two programs share a metrics port"


def test_embedded_sandbox_starts_first_and_stops_after_the_programs_that_call_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # supervisord's own parser and ordering: groups start in ascending priority and stop from
    # the end of that order, one group at a time.
    from supervisor.options import ServerOptions

    shutil.copy(REPO / "supervisord.conf", tmp_path)
    shutil.copytree(REPO / "supervisor", tmp_path / "supervisor", symlinks=True)
    (tmp_path / "var" / "run").mkdir(parents=True)
    for name, value in {
        "DOMOS_HOME": str(tmp_path),
        "DOMOS_ROLE": "embedded",
        "DOMOS_BIND_HOST": "127.0.0.1",
        "DOMOS_DATA_DIR": str(tmp_path / "var" / "data"),
        "SANDBOX_PORT": "8081",
        "SANDBOX_YOOKASSA_WEBHOOK_URL": "http://127.0.0.1:6000/yookassa/webhook",
    }.items():
        monkeypatch.setenv(name, value)
    options = ServerOptions()
    options.configfile = str(tmp_path / "supervisord.conf")
    options.process_config(do_usage=False)
    start_order = [group.name for group in sorted(options.process_group_configs)]
    stop_order = start_order[::-1]
    assert start_order[:2] == ["supervisor_exporter", "sandbox"]
    assert stop_order.index("monitors") < stop_order.index("sandbox")
    assert stop_order.index("bot") < stop_order.index("sandbox")


def test_every_program_name_fits_the_console_column():
    from runtime.logging import CONSOLE_PROGRAM_WIDTH

    names = [program.name for program in PROGRAMS] + ["supervisor_listener"]
    assert max(len(name) for name in names) <= CONSOLE_PROGRAM_WIDTH


def test_the_listener_logs_in_as_supervisord_conf_asks():
    from runtime.supervision.programs import SUPERVISOR_RPC_LOGIN

    conf = configparser.RawConfigParser()
    conf.read(REPO / "supervisord.conf")
    for section in ("unix_http_server", "supervisorctl"):
        assert (conf[section]["username"], conf[section]["password"]) == SUPERVISOR_RPC_LOGIN
