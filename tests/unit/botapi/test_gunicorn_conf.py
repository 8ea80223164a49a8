"""gunicorn's config file of botapi reads BOTAPI_* through BotApiSettings, as `domos botapi` does.

The file is loaded in a child process, as gunicorn's master loads it: it configures logging
process-wide, which the test process must keep as it is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONF = Path(__file__).parents[3] / "services" / "botapi" / "gunicorn_conf.py"
LOAD = (
    "import json, runpy, sys\n"
    "ns = runpy.run_path(sys.argv[1])\n"
    "print(json.dumps({'bind': ns['bind'], 'workers': ns['workers']}))\n"
)


def _load(tmp_path: Path, **botapi: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BOTAPI_")}
    environ |= {"DOMOS_DATA_DIR": str(tmp_path), "DB_TYPE": "sqlite", **botapi}
    return subprocess.run(
        [sys.executable, "-c", LOAD, str(CONF)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_defaults(tmp_path: Path) -> None:
    result = _load(tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"bind": "127.0.0.1:6000", "workers": 2}


def test_environment(tmp_path: Path) -> None:
    result = _load(tmp_path, BOTAPI_HOST="0.0.0.0", BOTAPI_PORT="6100", BOTAPI_WORKERS="5")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"bind": "0.0.0.0:6100", "workers": 5}


def test_the_settings_rules_apply(tmp_path: Path) -> None:
    # The bounds `domos botapi` enforces hold for the file too (read raw, 0 workers passed).
    result = _load(tmp_path, BOTAPI_WORKERS="0")
    assert result.returncode != 0
    assert "ConfigError" in result.stderr
    assert "BOTAPI_WORKERS" in result.stderr
