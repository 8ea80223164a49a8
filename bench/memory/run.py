"""Memory of the idle embedded stack: the RSS of every supervised program.

Starts `domos run --no-demo` (role embedded on SQLite: every program plus the sandbox) on a copy
of supervisord.conf in a temp dir, waits until every program is RUNNING and a few seconds more
for start-up work to settle, then reads each program's RSS from /proc, children included
(gunicorn workers). RSS counts the pages forked workers share with their master once per
process, so the total also comes as PSS (each shared page divided among its sharers), which is
what the stack really takes from the machine. The baseline, measured in the same run, is a bare
interpreter of the same Python. Last line: one JSON object; "ratio" = total PSS / the 1 GiB
budget of a small machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUDGET_BYTES = 1024**3
SETTLE_S = 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (gunicorn workers, uvicorn's, the web server's)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        fields = text.rsplit(")", 1)[1].split()
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_rss(pid: int) -> int:
    return sum(rss_bytes(p) for p in [pid, *children(pid)])


def tree_pss(pid: int) -> int:
    return sum(pss_bytes(p) for p in [pid, *children(pid)])


def baseline_rss() -> int:
    """A bare interpreter of the same Python: the floor of every program."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(1.0)
        return rss_bytes(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def supervisor_info(config: Path) -> list[dict[str, object]]:
    sys.path.insert(0, str(REPO))
    from runtime.observability.health import supervisor_processes

    try:
        return supervisor_processes(config)
    except OSError:
        return []


def main() -> int:
    home = Path(tempfile.mkdtemp(prefix="domos-bench-memory-"))
    shutil.copy(REPO / "supervisord.conf", home / "supervisord.conf")
    shutil.copytree(REPO / "supervisor", home / "supervisor", symlinks=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "YOOKASSA_", "DOMOS_", "DB_", "SANDBOX_", "DATABASE_"))
    }
    env["SANDBOX_PORT"] = str(free_port())
    config = home / "supervisord.conf"
    log = (home / "supervisord.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "domos"), "run", "--no-demo", "--config", str(config)],
        env=env,
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 150
        while True:
            infos = supervisor_info(config)
            if infos and all(info["statename"] == "RUNNING" for info in infos):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                print(f"the stack did not come up; log: {home / 'supervisord.log'}")
                return 1
            time.sleep(0.5)
        time.sleep(SETTLE_S)
        pids = {str(info["name"]): int(str(info["pid"])) for info in supervisor_info(config)}
        per_program = {name: tree_rss(pid) for name, pid in pids.items()}
        per_program_pss = {name: tree_pss(pid) for name, pid in pids.items()}
        supervisord = rss_bytes(proc.pid)
        supervisord_pss = pss_bytes(proc.pid)
        baseline = baseline_rss()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    shutil.rmtree(home, ignore_errors=True)

    mib = 1024**2
    total = sum(per_program.values()) + supervisord
    total_pss = sum(per_program_pss.values()) + supervisord_pss
    print(f"{'program':22s} {'RSS':>8s}     {'PSS':>8s}")
    for name, size in sorted(per_program.items(), key=lambda item: -item[1]):
        print(f"{name:22s} {size / mib:8.1f} MiB {per_program_pss[name] / mib:8.1f} MiB")
    print(f"{'supervisord':22s} {supervisord / mib:8.1f} MiB {supervisord_pss / mib:8.1f} MiB")
    print(
        f"{'total':22s} {total / mib:8.1f} MiB {total_pss / mib:8.1f} MiB "
        f"(budget {BUDGET_BYTES / mib:.0f} MiB)"
    )
    print(f"{'bare python (baseline)':22s} {baseline / mib:8.1f} MiB")
    result = {
        "programs_rss_mib": {n: round(size / mib, 1) for n, size in sorted(per_program.items())},
        "programs_pss_mib": {
            n: round(size / mib, 1) for n, size in sorted(per_program_pss.items())
        },
        "supervisord_mib": round(supervisord / mib, 1),
        "total_rss_mib": round(total / mib, 1),
        "total_pss_mib": round(total_pss / mib, 1),
        "baseline_bare_python_mib": round(baseline / mib, 1),
        "budget_mib": BUDGET_BYTES // mib,
        "ratio": round(total_pss / BUDGET_BYTES, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
