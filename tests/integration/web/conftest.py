"""Django configured once per session from a test environment; the database aliases switched per
backend (a fresh migrated SQLite data dir, or a fresh PostgreSQL database with every schema).

Django's settings are process-global, so the backend switch swaps the connection handler's
configuration (`use_databases`) rather than re-importing settings.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.db import async_database, sync_database
from tests.conftest import database_environ
from tests.integration.web.logins import log_in

_SESSION_ENV: dict[str, str] = {}


def use_databases(databases: dict[str, dict[str, Any]]) -> None:
    from asgiref.local import Local
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType
    from django.db import connections

    connections.close_all()
    settings.DATABASES = databases
    connections._settings = databases  # type: ignore[attr-defined]
    connections.__dict__.pop("settings", None)
    connections._connections = Local(connections.thread_critical)  # type: ignore[attr-defined]
    ContentType.objects.clear_cache()


@pytest.fixture(scope="session")
def django_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment Django is set up with (once): SQLite paths under a session data dir."""
    root = tmp_path_factory.mktemp("web")
    environ = {
        **database_environ("sqlite", str(root / "data")),
        "DOMOS_RUN_DIR": str(root / "run"),
        "WEB_STATIC_ROOT": str(root / "static"),
        "DJANGO_SECRET_KEY": "test-secret-key-not-for-production-0123456789",
        "DOMOS_TIMEZONE": "Europe/Moscow",
    }
    (root / "run").mkdir()
    old = {k: os.environ.get(k) for k in environ}
    os.environ.update(environ)
    os.environ["DJANGO_SETTINGS_MODULE"] = "services.web.settings"
    import django

    django.setup()
    from django.test.utils import setup_test_environment

    from services.web.bootstrap import collectstatic

    setup_test_environment()  # allows the test client's host, in-memory mail

    collectstatic()
    _SESSION_ENV.update(environ)
    yield environ
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ],
)
def web_backend(
    request: pytest.FixtureRequest,
    django_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Settings]:
    """Django switched to a fresh, migrated database of this backend; yields its settings."""
    from runtime.db.migrations import upgrade
    from services.web.bootstrap import migrate
    from services.web.databases import django_databases

    backend: str = request.param
    pg_url = None
    if backend == "postgres":
        pg_url = request.getfixturevalue("make_pg_database")(
            template=request.getfixturevalue("pg_template")
        )
    data_dir = tmp_path_factory.mktemp(f"web-{backend}") / "data"
    settings = Settings.from_env({**django_env, **database_environ(backend, str(data_dir), pg_url)})

    async def upgrade_domain() -> None:
        async with async_database(settings) as db:
            await upgrade(db)

    asyncio.run(upgrade_domain())
    use_databases(django_databases(settings.db))
    migrate()
    yield settings
    from django.db import connections

    connections.close_all()


@pytest.fixture(scope="module")
def domain_db(web_backend: Settings) -> Iterator[Any]:
    """The runtime's sync Database on the same backend, to seed and check domain rows."""

    db = sync_database(web_backend)
    db.open()
    yield db
    db.close()


@pytest.fixture(scope="module")
def staff(web_backend: Settings) -> tuple[str, str]:
    from services.web.bootstrap import create_staff

    create_staff("operator", "correct-horse-battery", superuser=True)
    return "operator", "correct-horse-battery"


@pytest.fixture
def client(staff: tuple[str, str]) -> Any:
    from django.test import Client

    client = Client()
    assert log_in(client, staff[0], staff[1])
    return client


@pytest.fixture
def run_dir(django_env: dict[str, str]) -> Path:
    return Path(django_env["DOMOS_RUN_DIR"])
