"""`manage createstaff --username NAME` (password from WEB_STAFF_PASSWORD or --password-env)."""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from services.web.bootstrap import create_staff


class Command(BaseCommand):
    help = "Create or update a staff login (password from an environment variable)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--password-env", default="WEB_STAFF_PASSWORD")
        parser.add_argument("--email", default="")
        parser.add_argument("--superuser", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get(options["password_env"])
        if not password:
            raise CommandError(f"{options['password_env']} must hold the staff password")
        created = create_staff(
            options["username"], password, email=options["email"], superuser=options["superuser"]
        )
        self.stdout.write(
            f"staff user {options['username']!r} {'created' if created else 'updated'}"
        )
