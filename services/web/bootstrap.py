"""Chores of `domos web`: Django's migrations (in schema `django` on PostgreSQL), static files,
staff logins. Call after django.setup()."""

from __future__ import annotations

import structlog
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from services.web.databases import DJANGO_ALIAS

log = structlog.get_logger("web")


def ensure_django_schema() -> None:
    """On PostgreSQL Django's tables live in schema `django`, which must exist first."""
    connection = connections[DJANGO_ALIAS]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("CREATE SCHEMA IF NOT EXISTS django")
    else:
        from pathlib import Path

        Path(settings.DATABASES[DJANGO_ALIAS]["NAME"]).parent.mkdir(parents=True, exist_ok=True)


def migrate() -> None:
    ensure_django_schema()
    call_command("migrate", database=DJANGO_ALIAS, interactive=False, verbosity=0)
    log.info("web_migrated")


def collectstatic() -> None:
    call_command("collectstatic", interactive=False, verbosity=0)
    log.info("web_static_collected", static_root=str(settings.STATIC_ROOT))


def create_staff(username: str, password: str, *, email: str = "", superuser: bool = False) -> bool:
    """Create the login or reset its password; True when it was created."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.password_validation import validate_password

    model = get_user_model()
    user, created = model.objects.get_or_create(username=username, defaults={"email": email})
    validate_password(password, user)
    user.set_password(password)
    user.is_staff = True
    user.is_active = True
    if superuser:
        user.is_superuser = True
    if email:
        user.email = email
    user.save()
    log.info("staff_user_saved", username=username, created=created, superuser=user.is_superuser)
    return bool(created)
