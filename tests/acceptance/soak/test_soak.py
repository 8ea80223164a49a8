"""A short soak: members live through a billing period and its renewals, real programs.

The sandbox and botapi run as processes, the bot and the monitors in the test's event loop on
a business clock the driver moves (tests/acceptance/soak/driver.py). Every invariant is checked
after each simulated day; any finding fails the test with the members' stories. The long runs
are `python -m tests.acceptance.soak.driver --members 200 --days 120` (figures in its output).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.acceptance.soak.driver import Soak


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, str | None]]:
    """sqlite, or postgres on a database of its own (soak_*), dropped afterwards."""
    if request.param == "sqlite":
        yield "sqlite", None
        return
    server: str = request.getfixturevalue("pg_server_url")
    name = f"soak_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield "postgres", server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def test_members_living_through_renewals_keep_every_promise(
    backend: tuple[str, str | None], tmp_path: Path
) -> None:
    kind, pg_url = backend
    soak = Soak(
        backend=kind,
        members=7,
        days=33,
        seed=3,
        workdir=tmp_path,
        pg_url=pg_url,
        step_hours=(6, 12),
        # Kept for the long runs: a two-day outage, and Telegram answers held ~10 s each.
        outages=False,
        telegram_timeouts=False,
        join_spread=4,  # every member joins early enough to meet a renewal
    )
    await soak.run()
    report = soak.report()
    assert not soak.findings, "\n".join(f.line() for f in soak.findings) + f"\n{report}"
    # The story mix did happen: payments, renewals charged, restarts, events, surveys, every
    # day of every member checked.
    assert report["payments"] >= 5, report
    assert report["charges"] >= 2, report
    assert report["restarts"], report
    assert report["actions"].get("event_registration"), report
    assert report["actions"].get("survey_answer"), report
    assert report["member_days"] >= 7 * 29, report
