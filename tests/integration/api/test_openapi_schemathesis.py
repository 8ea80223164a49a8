"""schemathesis (its CLI, `--checks all`, every phase including the stateful one) against the
OpenAPI of a real `domos api` process over HTTP, on both backends, three times: without
credentials, with a partner key and the admin key, and with a member's Mini App proof. No 5xx,
every status and header as documented, schema-valid requests accepted, invalid ones refused,
and no 2xx from an operation that needs a credential when none was sent (schemathesis's
`ignored_auth` checks the runs with credentials; the HAR of the anonymous run is read here).
The same process then stops on SIGTERM, cleanly."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runtime.config import Settings
from runtime.db import async_database
from runtime.db.migrations import upgrade
from runtime.telegram_proof import mini_app_authorization
from tests.integration.api.conftest import ADMIN_KEY, BOT_TOKEN, PARTNER_KEY
from tests.integration.api.processes import http, start_api

EXAMPLES_PER_OPERATION = 30
CONFIG = Path(__file__).with_name("schemathesis.toml")
MEMBER_ID = 1
#: Operations that answer only to a credential.
SECURED = ("/v1/subscriptions/", "/v1/payments", "/v1/admin/")


async def _prepare(environ: dict[str, str]) -> None:
    async with async_database(Settings.from_env(environ)) as db:
        await upgrade(db, ["main", "advert", "contract"])
        user = await db.fetchval(
            "INSERT INTO users (telegram_id) VALUES (?) RETURNING id", (MEMBER_ID,)
        )
        tariff = await db.fetchval(
            "INSERT INTO tariffs (code, title, price_minor, period_days)"
            " VALUES ('month', 'Месяц', 99000, 30) RETURNING id"
        )
        await db.execute(
            "INSERT INTO subscriptions (user_id, tariff_id, status, current_period_start,"
            " current_period_end) VALUES (?, ?, 'active', '2025-01-01T00:00:00.000000Z',"
            " '2099-01-01T00:00:00.000000Z')",
            (user, tariff),
        )


def _schemathesis(base: str, name: str, tmp_path: Path, headers: dict[str, str]) -> Path:
    """One run; the path of its HAR report. Fails the test with schemathesis's own report."""
    har = tmp_path / f"{name}.har"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG),
        "--no-color", "run", f"{base}/openapi.json",
        "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--generation-deterministic",
        "--workers", "1",
        "--report", "har", "--report-har-path", str(har),
    ]  # fmt: skip
    for header, value in headers.items():
        command += ["--header", f"{header}: {value}"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, f"schemathesis ({name}):\n{done.stdout[-20000:]}\n{done.stderr}"
    return har


def _successes(har: Path) -> list[str]:
    entries = json.loads(har.read_text())["log"]["entries"]
    return [
        f"{entry['request']['method']} {urlsplit(entry['request']['url']).path}"
        f" -> {entry['response']['status']}"
        for entry in entries
        if 200 <= entry["response"]["status"] < 300
    ]


@pytest.mark.slow
def test_api_conforms_to_its_openapi(api_environ: dict[str, str], tmp_path: Path) -> None:
    asyncio.run(_prepare(api_environ))
    # schemathesis sends a few thousand requests from one address
    program = start_api(
        api_environ,
        tmp_path / "api.log",
        API_RATE_LIMIT_SOURCE="1000000/minute",
        API_RATE_LIMIT_MEMBER="1000000/minute",
    )
    try:
        assert http("GET", program.base + "/health")[1] == {"status": "ok", "database": "ok"}
        assert http("GET", program.base + "/docs")[0] == 200

        anonymous = _schemathesis(program.base, "anonymous", tmp_path, {})
        leaked = [hit for hit in _successes(anonymous) if any(p in hit for p in SECURED)]
        assert leaked == [], leaked
        _schemathesis(
            program.base,
            "partner",
            tmp_path,
            {"X-Partner-Key": PARTNER_KEY, "X-API-Key": ADMIN_KEY},
        )
        proof = mini_app_authorization(BOT_TOKEN, MEMBER_ID)
        member = _schemathesis(program.base, "member", tmp_path, {"Authorization": proof})
        # The member's proof reaches the member's own data (the path example is not theirs
        # every time, but the stateful and coverage phases send their id too).
        assert any(hit.startswith("GET /v1/subscriptions/") for hit in _successes(member))
    finally:
        code = program.stop()
    logs = program.logs()
    assert code == 0, logs
    assert "Traceback" not in logs, logs
