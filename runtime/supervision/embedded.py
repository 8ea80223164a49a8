"""The embedded default: every program under one supervisord on this machine, on SQLite.

`domos run` (what `make run` calls) fills in the environment the programs need, applies the
schema, tells the operator where to look, and then becomes supervisord (exec), so Ctrl-C reaches
supervisord directly and it stops every program within its stopwaitsecs.

Without TELEGRAM_BOT_TOKEN the sandbox stands in for Telegram and YooKassa (role `embedded`
includes it); with real tokens the sandbox is left out (role `all`).
"""

from __future__ import annotations

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
    env.setdefault("DOMOS_ROLE", "embedded" if uses_sandbox else "all")
    # supervisord starts programs by name (`domos ...`): this interpreter's scripts come first.
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + ":" + env.get("PATH", "/usr/bin:/bin")
    return env


def banner(settings: Settings, env: Mapping[str, str], config: Path) -> str:
    """What the operator reads before supervisord's own lines start."""
    lines = [
        "domos is starting under supervisord (Ctrl-C stops every program cleanly)",
        f"  role:        {env['DOMOS_ROLE']}",
        f"  database:    {settings.db.type} in {settings.db.data_dir}",
        f"  telegram:    {settings.telegram.api_url}",
        f"  yookassa:    {settings.yookassa.api_url}",
        f"  status:      supervisorctl -c {config} status",
    ]
    if env["DOMOS_ROLE"] == "embedded":
        lines.append(f"  sandbox:     {settings.telegram.api_url}/_sandbox/ (docs/sandbox.md)")
    return "\n".join(lines)
