"""`domos monitor NAME` in process: start failures and a --once run on SQLite."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from runtime.cli import main
from runtime.monitor.health import health_path, read_health

MONITOR_SOURCE = """
from runtime.monitor import Monitor

class Pinger(Monitor):
    name = "pinger"
    interval_s = 5.0

    async def tick(self) -> int:
        value = await self.db.fetchval("SELECT 41 + 1")
        self.log.info("pinged", value=value)
        return 1

MONITOR = Pinger
"""


@pytest.fixture
def pinger_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = f"pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "pinger.py").write_text(MONITOR_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DOMOS_MONITOR_PACKAGE", package)
    monkeypatch.setenv("DOMOS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("DOMOS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DOMOS_PROGRAM", raising=False)
    monkeypatch.delenv("METRICS_PORT", raising=False)
    return tmp_path


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("restore_logging")
def test_once_on_sqlite(pinger_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", "pinger", "--once"]) == 0
    lines = json_lines(capsys.readouterr().err)
    [pinged] = [line for line in lines if line["event"] == "pinged"]
    assert pinged["value"] == 42
    assert pinged["program"] == "pinger"
    assert pinged["monitor"] == "pinger"
    state = read_health(health_path(pinger_env / "run", "pinger"))
    assert state is not None
    assert state.last_success_at is not None
    assert main(["monitor", "pinger", "--check"]) == 0


@pytest.mark.usefixtures("restore_logging")
def test_unreachable_database_is_logged_and_exits_2(
    pinger_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DB_TYPE", "postgres")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:topsecret@127.0.0.1:1/domos")
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", "0.5")
    assert main(["monitor", "pinger"]) == 2
    err = capsys.readouterr().err
    assert "topsecret" not in err
    [failed] = [line for line in json_lines(err) if line["event"] == "monitor_start_failed"]
    assert failed["error_type"] == "DatabaseUnavailable"
    assert "domos monitor: error: " in err


CONFIGURED_SOURCE = """
from dataclasses import dataclass
from runtime.config import Env
from runtime.monitor import Monitor

@dataclass(frozen=True)
class PingerSettings:
    greeting: str
    repeat: int

    @classmethod
    def from_env(cls, environ, settings):
        env = Env(environ)
        return cls(
            greeting=env.text("PINGER_GREETING", "hi") or "hi",
            repeat=env.integer("PINGER_REPEAT", 1, minimum=1),
        )

class Pinger(Monitor):
    name = "pinger"
    interval_s = 5.0
    config_type = PingerSettings

    async def tick(self) -> int:
        self.log.info("pinged", greeting=self.config.greeting * self.config.repeat)
        return 1

MONITOR = Pinger
"""


@pytest.mark.usefixtures("restore_logging")
def test_the_monitor_reads_its_settings_from_the_runner(
    pinger_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = next(p for p in pinger_env.iterdir() if p.name.startswith("pkg_"))
    (package / "pinger.py").write_text(CONFIGURED_SOURCE)
    monkeypatch.setenv("PINGER_GREETING", "yo")
    monkeypatch.setenv("PINGER_REPEAT", "2")
    assert main(["monitor", "pinger", "--once"]) == 0
    [pinged] = [line for line in json_lines(capsys.readouterr().err) if line["event"] == "pinged"]
    assert pinged["greeting"] == "yoyo"


@pytest.mark.usefixtures("restore_logging")
def test_a_bad_setting_exits_78_naming_it_before_the_database_opens(
    pinger_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = next(p for p in pinger_env.iterdir() if p.name.startswith("pkg_"))
    (package / "pinger.py").write_text(CONFIGURED_SOURCE)
    monkeypatch.setenv("PINGER_REPEAT", "many")
    # An unreachable database: had it been opened first, the error would be about it.
    monkeypatch.setenv("DB_TYPE", "postgres")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@127.0.0.1:1/domos")
    monkeypatch.setenv("DB_POOL_TIMEOUT_S", "0.5")
    assert main(["monitor", "pinger", "--once"]) == 78  # EX_CONFIG
    err = capsys.readouterr().err
    assert "PINGER_REPEAT" in err
    assert "monitor_start_failed" not in err
    assert not (pinger_env / "run").exists() or not list((pinger_env / "run").iterdir())
