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
from collections.abc import Mapping
from pathlib import Path

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


def banner(settings: Settings, env: Mapping[str, str], config: Path) -> str:
    """What the operator reads before supervisord's own lines start."""
    lines = [
        "domos is starting under supervisord (Ctrl-C stops every program cleanly)",
        f"  role:        {env['DOMOS_ROLE']}",
        f"  database:    {settings.db.type} in {settings.db.data_dir}",
        f"  telegram:    {settings.telegram.api_url}",
        f"  yookassa:    {settings.yookassa.api_url}",
        f"  status:      supervisorctl -c {config} status",
        "  api docs:    http://127.0.0.1:8001/docs",
        f"  admin:       http://127.0.0.1:8002/admin/ (user {STAFF_USERNAME},"
        f" password {env['WEB_STAFF_PASSWORD']})",
        "  metrics:     http://127.0.0.1:<port>/metrics (ports in runtime/supervision/programs.py)",
        f"  secrets:     {config.parent / 'var' / 'embedded-secrets.json'} (API_ADMIN_KEY, …)",
    ]
    if env["DOMOS_ROLE"] == "embedded":
        lines.append(f"  sandbox:     {settings.telegram.api_url}/_sandbox/ (docs/sandbox.md)")
    return "\n".join(lines)
