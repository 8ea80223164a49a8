"""Errors as JSON: `{"error": {"code": ..., "message": ...}}`, never a stack trace.

Handlers for the API's own errors, the runtime's error tree, validation, unknown routes and
anything unexpected (500, logged with its traceback on the server side only).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from runtime.errors import (
    DatabaseUnavailable,
    DomosError,
    IntegrityError,
    TransientError,
)

log = structlog.get_logger("api")


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class ApiError(DomosError):
    """An answer other than success, with its HTTP status and a stable machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(error=ErrorDetail(code=code, message=message, details=details))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


_RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
#: What a status means across the API, where the default reason phrase says too little.
_DESCRIPTIONS = {
    401: "`unauthorized`: no valid credential (see the security schemes)",
    403: "`forbidden`: the credential may not act for this member, or the token is not usable",
    413: "`payload_too_large`: the body is larger than API_MAX_BODY_BYTES",
    422: "`validation_error`: `details` lists each invalid field",
    429: "`rate_limited`: too many requests for this member or from this address",
    503: "`database_unavailable`; or, as plain text from the server, more requests in flight"
    " than API_MAX_CONCURRENCY",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` documenting the error body for each status."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorBody}
        if status in _DESCRIPTIONS:
            entry["description"] = _DESCRIPTIONS[status]
        if status in (429, 503):
            entry["headers"] = {"Retry-After": _RETRY_AFTER}
        documented[status] = entry
    return documented


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it could not even decode (not UTF-8, say): the same 422 as
        # a body that is not JSON, so one documented status covers every unreadable body.
        return error_response(422, "validation_error", "invalid body: it could not be decoded")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        allow = _allowed_methods(request, (headers or {}).get("Allow"))
        if allow is not None:
            headers = {**(headers or {}), "Allow": allow}
            message = f"{request.method} is not allowed here; allowed: {allow}"
    return error_response(exc.status_code, code, message, headers=headers)


def _allowed_methods(request: Request, fallback: str | None) -> str | None:
    """Every documented method of this path (and HEAD beside GET, which Starlette serves).
    Starlette's own `Allow` names only the first route that matched the path, so a path served
    by two routes (GET and POST of a collection) would hide one of them."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        if _path_regex(template).match(request.url.path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) if methods else fallback


@functools.lru_cache(maxsize=256)
def _path_regex(template: str) -> re.Pattern[str]:
    regex, _, _ = compile_path(template)
    return regex


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "message": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    first = details[0] if details else None
    where = ".".join(first["loc"]) if first else "request"
    message = f"invalid {where}: {first['message']}" if first else "invalid request"
    return error_response(422, "validation_error", message, jsonable_encoder(details))


async def _domos_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DatabaseUnavailable | TransientError):
        log.warning("request_database_unavailable", path=request.url.path, error=str(exc))
        return error_response(
            503,
            "database_unavailable",
            "the database is unavailable; retry later",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, IntegrityError):
        log.warning("request_conflict", path=request.url.path, error=str(exc))
        return error_response(409, "conflict", "the request conflicts with the stored state")
    log.error("request_failed", path=request.url.path, error=str(exc), exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("request_crashed", path=request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DomosError, _domos_error)
    app.add_exception_handler(Exception, _unexpected)
