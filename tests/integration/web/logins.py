"""Logging the test client in through django-axes."""

from __future__ import annotations

from typing import Any


def log_in(client: Any, username: str, password: str) -> bool:
    """`Client.login`, with the request django-axes's backend needs to count the attempt."""
    from django.http import HttpRequest

    return bool(client.login(request=HttpRequest(), username=username, password=password))
