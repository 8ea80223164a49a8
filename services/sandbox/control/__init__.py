"""The control API (`/_sandbox/...`): what tests and the demo use to play users, banks and time.

JSON in, JSON out. Errors are `{"error": "..."}` with 400 (bad input) or 404 (unknown object);
YooKassa-side refusals keep YooKassa's error object. See docs/sandbox.md for the reference.
"""

from __future__ import annotations

from aiohttp import web

from services.sandbox.control.base import ControlError, Keys, wrap
from services.sandbox.control.general import general_routes
from services.sandbox.control.telegram import telegram_routes
from services.sandbox.control.yookassa import add_checkout, yookassa_routes

__all__ = ["ControlError", "Keys", "add_routes"]


def add_routes(app: web.Application, keys: Keys) -> None:
    for method, path, handler in [
        *general_routes(keys),
        *telegram_routes(keys),
        *yookassa_routes(keys),
    ]:
        app.router.add_route(method, path, wrap(handler))
    add_checkout(app, keys)
