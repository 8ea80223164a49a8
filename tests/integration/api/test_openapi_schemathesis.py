"""schemathesis against the OpenAPI of a real `domos api` process, on both backends: no 5xx, and
every response matches the documented status codes, content types and schemas. The same process
then stops on SIGTERM, cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import checks

from runtime.config import Settings
from runtime.db import async_database
from runtime.db.migrations import upgrade
from tests.integration.api.conftest import ADMIN
from tests.integration.api.processes import free_port, http, start_program

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 25


async def _prepare(environ: dict[str, str]) -> None:
    async with async_database(Settings.from_env(environ)) as db:
        await upgrade(db, ["main", "advert", "contract"])
        user = await db.fetchval(
            "INSERT INTO users (telegram_id) VALUES (1) RETURNING id",
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


@pytest.mark.slow
def test_api_conforms_to_its_openapi(api_environ: dict[str, str], tmp_path: Path) -> None:
    asyncio.run(_prepare(api_environ))
    port = free_port()
    program = start_program(
        "services.api.cli",
        ["api", "--port", str(port)],
        {**api_environ, "LOG_LEVEL": "warning"},
        "/health",
        tmp_path / "api.log",
        port,
    )
    try:
        assert http("GET", program.base + "/health")[1] == {"status": "ok", "database": "ok"}
        docs_status, _ = http("GET", program.base + "/docs")
        assert docs_status == 200
        schema = schemathesis.openapi.from_url(program.base + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 14
        for operation in operations:
            _exercise(operation, program.base)
    finally:
        code = program.stop()
    logs = program.logs()
    assert code == 0, logs
    assert "Traceback" not in logs, logs


def _exercise(operation: Any, base_url: str) -> None:
    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=ADMIN, checks=CHECKS)

    run()
