"""The Flask application: `create_app(settings, botapi_settings)`.

Each gunicorn worker builds its own app (no preload), so each has its own DB pool and HTTP client.
Errors are JSON `{"error": {"code", "message"}}`, never a stack trace.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from payments.client import SyncYooKassaClient
from runtime.config import Settings
from runtime.db import Database, sync_database
from runtime.errors import DatabaseError, DatabaseUnavailable, TransientError
from runtime.forwarded import client_address
from runtime.metrics import UNMATCHED_ROUTE, exposition_registry, record_http_request
from services.botapi.ipallow import allowed
from services.botapi.send import SendConflict, SendRequest, UnsendableText, enqueue
from services.botapi.settings import BotApiSettings
from services.botapi.webhook import Fetcher, handle_notification
from services.common.credentials import bearer_token, secret_matches

log = structlog.get_logger("botapi")

MAX_BODY_BYTES = 1024 * 1024
UNMATCHED = UNMATCHED_ROUTE


def json_body() -> Any:
    """The request's JSON; None when it is none. `silent` covers malformed JSON (ValueError),
    not nesting deeper than the parser's recursion: 200 KB of `[` raised RecursionError, a 500
    and an error-level traceback any stranger could repeat."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message, **extra}}), status


def create_app(
    settings: Settings,
    botapi_settings: BotApiSettings,
    *,
    db: Database | None = None,
    yookassa: Fetcher | None = None,
) -> Flask:
    app = Flask("botapi")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if db is None:
        db = sync_database(settings, name="botapi")
        db.open()
    if yookassa is None:
        yookassa = SyncYooKassaClient(settings, timeout_s=botapi_settings.provider_timeout_s)
    app.extensions["domos"] = {"db": db, "yookassa": yookassa}
    _install_metrics(app, settings.program)
    _install_error_handlers(app)

    def caller() -> str | None:
        address = client_address(
            request.remote_addr,
            request.headers.get("X-Forwarded-For"),
            botapi_settings.trusted_proxies,
        )
        return None if address is None else str(address)

    @app.post("/yookassa/webhook")
    def yookassa_webhook() -> Any:
        source_ip = caller()
        if not allowed(
            None if source_ip is None else client_address(source_ip, None, ()),
            botapi_settings.webhook_allowlist,
        ):
            log.warning("webhook_source_refused", ip=source_ip)
            return error(403, "forbidden", "source address is not allowed")
        body = json_body()
        if body is None:
            return error(400, "bad_request", "body must be JSON")
        outcome = handle_notification(body, source_ip, yookassa, db)
        return jsonify(outcome.body), outcome.status

    @app.post("/send")
    def send() -> Any:
        token = bearer_token(request.headers.get("Authorization"))
        if botapi_settings.send_token is None:
            return error(403, "send_disabled", "/send is disabled: BOTAPI_SEND_TOKEN is not set")
        if not secret_matches(token, botapi_settings.send_token):
            return error(401, "unauthorized", "a valid Authorization: Bearer token is required")
        body = json_body()
        if body is None:
            return error(400, "bad_request", "body must be JSON")
        try:
            send_request = SendRequest.model_validate(body)
        except ValidationError as exc:
            details = [
                {"loc": [str(p) for p in e["loc"]], "message": e["msg"]} for e in exc.errors()
            ]
            first = details[0]
            message = f"invalid {'.'.join(first['loc']) or 'body'}: {first['message']}"
            return error(422, "validation_error", message, details=details)
        try:
            result, created = enqueue(db, send_request)
        except SendConflict as exc:
            return error(409, "dedupe_conflict", str(exc), outbox_id=exc.outbox_id)
        except UnsendableText as exc:
            return error(400, "unsendable_text", f"text cannot be sent: {exc}")
        if created:
            log.info("notification_enqueued", outbox_id=result["id"], kind=send_request.kind)
        return jsonify(result), 201 if created else 200

    @app.get("/health")
    def health() -> Any:
        try:
            db.fetchval("SELECT 1")
        except DatabaseError as exc:
            log.warning("health_database_unavailable", error=str(exc))
            return jsonify({"status": "unavailable", "database": type(exc).__name__}), 503
        return jsonify({"status": "ok", "database": "ok"})

    @app.get("/metrics")
    def metrics() -> Response:
        # gunicorn workers: every worker's series added up.
        return Response(generate_latest(exposition_registry()), mimetype=CONTENT_TYPE_LATEST)

    return app


def _install_metrics(app: Flask, program: str) -> None:
    @app.before_request
    def start_timer() -> None:
        g.domos_started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        started = g.pop("domos_started", None)
        if started is not None:
            rule = request.url_rule
            record_http_request(
                program=program,
                route=rule.rule if rule is not None else UNMATCHED,
                method=request.method,
                status=response.status_code,
                duration_s=time.perf_counter() - started,
            )
        return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = (exc.name or "http error").lower().replace(" ", "_")
        return error(exc.code or 500, code, exc.description or exc.name or "error")

    @app.errorhandler(DatabaseError)
    def database_error(exc: DatabaseError) -> Any:
        if isinstance(exc, DatabaseUnavailable | TransientError):
            log.warning("request_database_unavailable", path=request.path, error=str(exc))
            return error(503, "database_unavailable", "the database is unavailable; retry later")
        log.error("request_failed", path=request.path, exc_info=exc)
        return error(500, "internal_error", "internal server error")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        log.error("request_crashed", path=request.path, exc_info=exc)
        return error(500, "internal_error", "internal server error")
