"""The WSGI entry point gunicorn imports in each worker: `services.botapi.wsgi:app`."""

from __future__ import annotations

from services.botapi.main import build_app

app = build_app()
