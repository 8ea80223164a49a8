"""Django's DATABASES from the runtime's database settings, for either DB_TYPE.

One alias per logical database, so the same unmanaged models work on both backends:
- SQLite: `default` is the `django` file (web/db.sqlite3), every domain alias its own file;
- PostgreSQL: every alias is the same database with a `search_path` of its schema (`django` for
  Django's own tables; main, advert, contract; bot for audio/nmarket/useful/tradeagent).
The router (services.web.router) sends each model to the alias named by its `logical_db`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from runtime.config import DatabaseSettings
from runtime.logical_databases import DOMAIN_DATABASES, LOGICAL_DATABASES

DJANGO_ALIAS = "default"


def _postgres(url: str, schema: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "domos",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"options": f"-c search_path={schema}"},
    }


def _sqlite(path: str, busy_timeout_s: float, *, domain: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        # The monitors write these files concurrently: wait for their locks instead of failing.
        "timeout": busy_timeout_s,
        "init_command": "PRAGMA foreign_keys=ON;",
    }
    if domain:
        # The domain tables declare TIMESTAMPTZ, BOOLEAN and JSON, for which the DB layer
        # registers sqlite3 converters (runtime.db.types); sqlite3's converters are process-wide
        # and Django opens its connections with PARSE_DECLTYPES, so its fields would receive
        # values decoded already (JSONField: "the JSON object must be str ... not dict", a 500
        # on every payment and provider event). Django converts the stored text itself.
        options["detect_types"] = 0
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": path, "OPTIONS": options}


def django_databases(settings: DatabaseSettings) -> dict[str, dict[str, Any]]:
    aliases = (DJANGO_ALIAS, *DOMAIN_DATABASES)
    result: dict[str, dict[str, Any]] = {}
    for alias in aliases:
        logical = "django" if alias == DJANGO_ALIAS else alias
        if settings.type == "postgres":
            result[alias] = _postgres(
                settings.require_postgres_url(), LOGICAL_DATABASES[logical].pg_schema
            )
        else:
            result[alias] = _sqlite(
                str(settings.sqlite_path(logical)),
                settings.sqlite_busy_timeout_s,
                domain=alias != DJANGO_ALIAS,
            )
    return result
