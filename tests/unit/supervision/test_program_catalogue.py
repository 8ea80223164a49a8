from __future__ import annotations

import configparser
import shutil
from pathlib import Path

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
