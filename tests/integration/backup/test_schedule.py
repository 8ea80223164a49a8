"""`domos backup schedule` as supervisord runs it: backs up on schedule, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[3]


def scrape(port: int) -> dict[str, float]:
    """The /metrics samples, by name and labels as exposed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_schedule_backs_up_then_stops_cleanly_on_sigterm(tmp_path):
    data_dir = tmp_path / "data"
    main_db = data_dir / "bot/tgbot/databases/data.db"
    main_db.parent.mkdir(parents=True)
    with sqlite3.connect(main_db) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('kept')")
    backup_dir = tmp_path / "backup"
    metrics_port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "backup",
            "schedule",
            "--every-hours",
            "0.0005",  # 1.8 s
            "--keep",
            "1",
            "--backup-dir",
            str(backup_dir),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DB_TYPE": "sqlite",
            "DOMOS_DATA_DIR": str(data_dir),
            "LOG_FORMAT": "json",
            "METRICS_PORT": str(metrics_port),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        copy = None
        while time.monotonic() < deadline and copy is None:
            copy = next(iter((backup_dir / "sqlite").glob("*/*/main.sqlite")), None)
            time.sleep(0.1)
        assert copy is not None, "no backup was made"
        time.sleep(2.5)  # a second round runs
        # What DomosBackupStale and DomosBackupNeverSucceeded read.
        metrics = scrape(metrics_port)
        assert metrics['domos_backup_runs_total{kind="sqlite",outcome="succeeded"}'] >= 2
        assert metrics['domos_backup_runs_total{kind="sqlite",outcome="failed"}'] == 0
        assert metrics["domos_backup_interval_seconds"] == 1.8
        stamp = metrics['domos_backup_last_success_timestamp_seconds{kind="sqlite"}']
        assert time.time() - 5 < stamp <= time.time()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    assert output.count("backup_round_finished") >= 2, output
    assert "backup_schedule_stopped" in output
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [("kept",)]
    [day] = (backup_dir / "sqlite").iterdir()
    assert day == copy.parent.parent
    # Each round in its own directory: the second did not replace the first.
    assert len([run for run in day.iterdir() if (run / "main.sqlite").exists()]) >= 2
