"""The embedded default: every program under one supervisord on this machine, on SQLite.

`domos run` (what `make run` calls) fills in the environment the programs need, applies the
schema, tells the operator where to look, and then becomes supervisord (exec), so Ctrl-C reaches
supervisord directly and it stops every program within its stopwaitsecs.

Without TELEGRAM_BOT_TOKEN the sandbox stands in for Telegram and YooKassa (role `embedded`
includes it); with real tokens the sandbox is left out (role `all`).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from runtime.config import Settings

SANDBOX_PORT = 8081
#: botapi receives YooKassa notifications here (the sandbox posts them).
WEBHOOK_PATH = "/yookassa/webhook"
BOTAPI_PORT = 6000
SANDBOX_BOT_TOKEN = "100000001:embedded-sandbox-bot-token"
SANDBOX_SHOP_ID = "100001"
SANDBOX_SECRET_KEY = "test_embedded_sandbox_secret"


def embedded_environment(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The environment of supervisord and its programs for a run on this machine.

    Values already set in `environ` win, so an operator can point any piece elsewhere.
    """
    env = dict(environ)
    defaults = {
        "DOMOS_HOME": str(home),
        "DOMOS_BIND_HOST": "127.0.0.1",
        "DB_TYPE": "sqlite",
        "DOMOS_DATA_DIR": str(home / "var" / "data"),
        "DOMOS_RUN_DIR": str(home / "var" / "run"),
        "BACKUP_DIR": str(home / "var" / "backup"),
        "SANDBOX_PORT": str(SANDBOX_PORT),
        # The local run serves plain HTTP on loopback; secure cookies would never be sent back.
        "WEB_SECURE_COOKIES": "false",
        "SANDBOX_YOOKASSA_WEBHOOK_URL": f"http://127.0.0.1:{BOTAPI_PORT}{WEBHOOK_PATH}",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    uses_sandbox = not env.get("TELEGRAM_BOT_TOKEN")
    if uses_sandbox:
        # The sandbox accepts whatever credentials it is started with (it reads the same
        # variables), so these only have to be well-formed.
        sandbox_url = f"http://127.0.0.1:{env['SANDBOX_PORT']}"
        env.update(
            TELEGRAM_BOT_TOKEN=SANDBOX_BOT_TOKEN,
            TELEGRAM_API_URL=sandbox_url,
            YOOKASSA_SHOP_ID=SANDBOX_SHOP_ID,
            YOOKASSA_SECRET_KEY=SANDBOX_SECRET_KEY,
            YOOKASSA_API_URL=sandbox_url,
        )
    for key, value in embedded_secrets(home / "var" / "embedded-secrets.json").items():
        env.setdefault(key, value)
    env.setdefault("DOMOS_ROLE", "embedded" if uses_sandbox else "all")
    # supervisord starts programs by name (`domos ...`): this interpreter's scripts come first.
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + ":" + env.get("PATH", "/usr/bin:/bin")
    return env


#: Secrets a local run needs; generated once per checkout and kept, because tokens already
#: issued are hashed with API_TOKEN_HASH_KEY.
EMBEDDED_SECRETS = (
    "API_ADMIN_KEY",
    "API_TOKEN_HASH_KEY",
    "BOTAPI_SEND_TOKEN",
    "WEB_STAFF_PASSWORD",
)
#: The staff login `domos run` creates for the admin.
STAFF_USERNAME = "admin"


def embedded_secrets(path: Path) -> dict[str, str]:
    """The local run's generated secrets, created (mode 0600) on first use."""
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in EMBEDDED_SECRETS if name not in stored]
    if missing:
        stored.update({name: secrets.token_urlsafe(32) for name in missing})
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(stored, out, indent=2)
    return stored


def banner(settings: Settings, env: Mapping[str, str]) -> str:
    """What the operator reads before supervisord's own lines start."""
    return "\n".join(
        [
            "domos is starting under supervisord (Ctrl-C stops every program cleanly)",
            f"  role:        {env['DOMOS_ROLE']}",
            f"  database:    {settings.db.type} in {settings.db.data_dir}",
            f"  telegram:    {settings.telegram.api_url}",
            f"  yookassa:    {settings.yookassa.api_url}",
            "  a summary of the programs and where to look follows once they are up",
        ]
    )


def service_urls(env: Mapping[str, str]) -> dict[str, str]:
    """Program -> a page that answers once it is up: `domos supervisor status --wait-s` waits
    for them before it prints, so the links it prints work."""
    urls = {
        "api": "http://127.0.0.1:8001/docs",
        "web": "http://127.0.0.1:8002/admin/",
        "botapi": f"http://127.0.0.1:{BOTAPI_PORT}/health",
    }
    if env.get("DOMOS_ROLE") == "embedded":
        urls["sandbox"] = f"http://127.0.0.1:{env['SANDBOX_PORT']}/_sandbox/telegram/sent"
    return urls


def metrics_urls() -> dict[str, str]:
    """Program -> its /metrics, from the catalogue (the listener's too)."""
    from runtime.supervision.programs import LISTENER_METRICS_PORT, LISTENER_NAME, PROGRAMS

    ports = {p.name: p.metrics_port for p in PROGRAMS if p.metrics_port is not None}
    ports[LISTENER_NAME] = LISTENER_METRICS_PORT
    return {name: f"http://127.0.0.1:{port}/metrics" for name, port in ports.items()}


def _coloured(text: str, code: str, colors: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colors else text


def status_report(
    processes: Sequence[Mapping[str, Any]],
    env: Mapping[str, str],
    config: Path,
    *,
    elapsed_s: float,
    colors: bool = False,
) -> str:
    """The programs' states and where to look, printed once the programs are up."""
    running = [p for p in processes if p["statename"] == "RUNNING"]
    metrics = metrics_urls()
    width = max([len(str(p["name"])) for p in processes] + [len("program")])
    if len(running) == len(processes):
        head = f"domos is up: {len(processes)} programs RUNNING"
    else:
        head = f"domos: {len(running)} of {len(processes)} programs RUNNING"
    lines = [f"{head} (role {env.get('DOMOS_ROLE', '?')}, {elapsed_s:.0f} s)"]
    lines.append(f"  {'program'.ljust(width)}  {'state'.ljust(8)}  metrics")
    for info in sorted(processes, key=lambda info: str(info["name"])):
        name, state = str(info["name"]), str(info["statename"])
        shown = _coloured(state.ljust(8), "32" if state == "RUNNING" else "31", colors)
        lines.append(f"  {name.ljust(width)}  {shown}  {metrics.get(name, '')}".rstrip())
    supervisorctl = Path(sys.executable).parent / "supervisorctl"
    urls = service_urls(env)
    look = [
        ("api docs", urls["api"]),
        (
            "web admin",
            f"{urls['web']} (user {STAFF_USERNAME}, password WEB_STAFF_PASSWORD in"
            f" {config.parent / 'var' / 'embedded-secrets.json'})",
        ),
    ]
    if "sandbox" in urls:
        look.append(("sent messages", f"{urls['sandbox']} (what the bot sent; docs/sandbox.md)"))
    look += [
        ("programs", f"{supervisorctl} -c {config} status"),
        ("a program's log", "its lines here: each names its program"),
        ("stop", "Ctrl-C (every program stops cleanly)"),
    ]
    label = max(len(name) for name, _ in look)
    lines.append("where to look")
    lines += [f"  {name.ljust(label)}  {where}" for name, where in look]
    return "\n".join(lines)


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # up; a 401 or 404 is still an answer
    except OSError:
        return False


def print_status(
    config: Path, env: Mapping[str, str], wait_s: float, out: TextIO, colors: bool
) -> int:
    """Wait (up to `wait_s`) until every program is RUNNING and the services' pages answer, or
    one is FATAL; then print `status_report` in one write. 1 when supervisord never answered,
    went away meanwhile (a Ctrl-C during the start: nothing to report, and no report after the
    prompt is back), or a program is not RUNNING."""
    import time
    import xmlrpc.client

    from runtime.observability.health import supervisor_processes

    started = time.monotonic()
    processes: list[dict[str, Any]] = []
    answered: set[str] = set()
    while True:
        try:
            processes = supervisor_processes(config)
        except (OSError, xmlrpc.client.Error):
            if processes:
                return 1
        states = {str(p["statename"]) for p in processes}
        pending = []
        if processes and states == {"RUNNING"}:
            names = {str(p["name"]) for p in processes}
            urls = [url for name, url in service_urls(env).items() if name in names]
            answered.update(url for url in urls if url not in answered and _answers(url))
            pending = [url for url in urls if url not in answered]
            if not pending:
                break
        if "FATAL" in states or time.monotonic() - started >= wait_s:
            break
        time.sleep(0.5)
    if not processes:
        print(f"domos: supervisord is not answering ({config})", file=sys.stderr, flush=True)
        return 1
    report = status_report(
        processes, env, config, elapsed_s=time.monotonic() - started, colors=colors
    )
    out.write(report + "\n")
    out.flush()
    return 0 if states == {"RUNNING"} else 1
