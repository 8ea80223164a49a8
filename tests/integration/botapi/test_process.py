"""`domos botapi` as supervisord runs it: gunicorn with sync workers, the sandbox's real webhook
delivery, metrics added up across workers, and a graceful stop on SIGTERM."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import sync_database
from tests.integration.api.processes import SandboxProcess, free_port, http, start_program
from tests.integration.botapi.conftest import SEND_TOKEN, our_payment


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.slow
def test_gunicorn_service_end_to_end(
    botapi_environ: dict[str, str], sandbox: SandboxProcess, tmp_path: Path
) -> None:
    port = free_port()
    environ = {
        **botapi_environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "info",
    }
    program = start_program(
        "services.botapi.cli",
        ["botapi", "--port", str(port), "--workers", "2"],
        environ,
        "/health",
        tmp_path / "botapi.log",
        port,
    )
    db = sync_database(Settings.from_env(environ))
    db.open()
    try:
        assert http("GET", program.base + "/health") == (200, {"status": "ok", "database": "ok"})

        # YooKassa (the sandbox) delivers the notification by itself.
        sandbox.control("PUT", "/yookassa/webhook", {"url": program.base + "/yookassa/webhook"})
        payment = sandbox.create_payment()
        our_payment(db, payment["id"])
        sandbox.control("POST", f"/yookassa/payments/{payment['id']}/succeed")
        deadline = time.monotonic() + 15
        event: Any = None
        while event is None and time.monotonic() < deadline:
            event = db.fetchone(
                "SELECT * FROM provider_events WHERE object_id = ?", (payment["id"],)
            )
            time.sleep(0.1)
        assert event is not None, program.logs()
        assert event["event_type"] == "payment.succeeded"
        assert event["payload"]["status"] == "succeeded"

        auth = {"Authorization": f"Bearer {SEND_TOKEN}"}
        body = {"chat_id": 5, "text": "hello", "dedupe_key": "process:1"}
        statuses = [http("POST", program.base + "/send", body, auth)[0] for _ in range(6)]
        assert statuses == [201] + [200] * 5
        assert db.fetchval("SELECT count(*) FROM outbox") == 1

        _, text = http("GET", program.base + "/metrics")
        assert _metric(text, "domos_http_requests_total", route="/send", status="201") == 1
        assert _metric(text, "domos_http_requests_total", route="/send", status="200") == 5
        assert (
            _metric(text, "domos_http_requests_total", route="/yookassa/webhook", status="200") >= 1
        )
    finally:
        sandbox.control("PUT", "/yookassa/webhook", {"url": None})
        db.close()
        started = time.monotonic()
        code = program.stop()
    logs = program.logs()
    assert code == 0, logs
    assert time.monotonic() - started < 12
    assert "Traceback" not in logs, logs
    assert '"event": "webhook_recorded"' in logs or "webhook_recorded" in logs
