"""A NUL character in what a request brings is refused before any view runs.

PostgreSQL text cannot hold NUL (U+0000): one that reached a query made the page a 500
(psycopg's DataError "PostgreSQL text fields cannot contain NUL (0x00) bytes"), and SQLite
stored it silently. It came in as a list's filter on any admin table, the autocomplete's term,
a session key (a quoted cookie's octal escape `\\000`), or a header django-axes stores of a
failed login. No page of this site takes a NUL, so it is refused once, here, for all of them:

- in an admin list's query string: the admin's own "wrong parameters" redirect (`?e=1`), its
  answer to any filter it cannot apply;
- in the path, any other query string, a cookie or a header: 400.

Form bodies are the forms' to check: every CharField and ModelChoiceField carries Django's
ProhibitNullCharactersValidator, so an operator who pastes a NUL sees the field's message, and
an action's checked rows are checked by the admin site (services.web.admin_site).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from django.contrib.admin.views.main import ERROR_FLAG
from django.http import (
    HttpRequest,
    HttpResponseBadRequest,
    HttpResponseBase,
    HttpResponseRedirect,
)

log = structlog.get_logger("web")

NUL = "\x00"

#: Where a NUL was found, as the 400's text says it.
PLACES = {
    "path": "в пути",
    "query": "в параметрах запроса",
    "cookie": "в cookie",
    "header": "в заголовке",
}


def nul_place(request: HttpRequest) -> str | None:
    """Where the request carries a NUL (a key of PLACES), or None."""
    if NUL in request.path_info:
        return "path"
    for key, values in request.GET.lists():
        if NUL in key or any(NUL in value for value in values):
            return "query"
    for key, value in request.COOKIES.items():
        if NUL in key or NUL in value:
            return "cookie"
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and NUL in value:
            return "header"
    return None


def is_admin_list(request: HttpRequest, view: Callable[..., Any]) -> bool:
    """Whether `view` is a ModelAdmin's list (its changelist URL)."""
    model_admin = getattr(view, "model_admin", None)  # set by ModelAdmin.get_urls
    match = request.resolver_match
    if model_admin is None or match is None:
        return False
    opts = model_admin.opts
    return bool(match.url_name == f"{opts.app_label}_{opts.model_name}_changelist")


class NulGuardMiddleware:
    """Answers a request with a NUL in process_view: after URL resolution (so an admin list is
    known), before the view, the first code that reads the session or the database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> HttpResponseBase | None:
        place = nul_place(request)
        if place is None:
            return None
        route = request.resolver_match.route if request.resolver_match else None
        log.info("request_refused", reason="nul", place=place, route=route)
        if place == "query" and is_admin_list(request, view):
            return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
        return HttpResponseBadRequest(
            f"Запрос отклонён: {PLACES[place]} есть символ NUL (0x00).",
            content_type="text/plain; charset=utf-8",
        )
