"""The FastAPI application: `create_app(settings, api_settings)`.

The lifespan opens one AsyncDatabase (one pool per process) and one YooKassa client, and closes
them on shutdown. Everything else is stateless, so several workers or replicas can serve at once.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from payments.client import YooKassaClient
from runtime.config import Settings
from runtime.db import AsyncDatabase, async_database, schema_gate
from runtime.errors import DatabaseError
from services.api.bodylimit import BodyLimitMiddleware
from services.api.direct_route import DirectRoute
from services.api.errors import ApiError, ErrorBody, install_error_handlers, responses
from services.api.gate import (
    MEMBER_SECURITY,
    Gate,
    admit_member,
    document_member_security,
    limit_source,
)
from services.api.identity import IdentityVerifier
from services.api.metrics import RequestMetricsMiddleware
from services.api.models import (
    INT64_MAX,
    TELEGRAM_ID_MAX,
    Health,
    IssuedToken,
    Payment,
    PaymentCreate,
    SubscriptionStatus,
    TokenInfo,
    TokenIssue,
    TokenKind,
    TokenList,
    TokenPresented,
    TokenRevoke,
    TokenUse,
    TokenUsed,
    TokenVerdict,
    payment_request_model,
)
from services.api.payments import PaymentService
from services.api.ratelimit import RateLimits
from services.api.settings import ApiSettings
from services.api.subscriptions import subscription_status
from services.api.tokens import TokenHasher, TokenStore, token_state, uses_left
from services.common.credentials import secret_matches
from services.common.text import Text

log = structlog.get_logger("api")

HEALTH_TIMEOUT_S = 3.0
TOKEN_KINDS: tuple[TokenKind, ...] = ("advert", "contract")


@dataclass
class Services:
    db: AsyncDatabase
    payments: PaymentService
    tokens: dict[str, TokenStore]


def services(request: Request) -> Services:
    """The app's services. Read from the request, not injected as a dependency: FastAPI spends
    about 10 us solving each dependency of each request (bench/api), and a plain `def`
    dependency would even hop to its thread pool."""
    found: Services = request.app.state.services
    return found


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API_ADMIN_KEY")
#: Statuses every member operation may answer besides its own.
MEMBER_ERRORS = (401, 403, 413, 422, 429, 503)
#: Statuses every other /v1 operation may answer besides its own.
COMMON_ERRORS = (413, 422, 429, 503)


def create_app(settings: Settings, api_settings: ApiSettings) -> FastAPI:
    hasher = TokenHasher(api_settings.token_hash_key)
    verifier = IdentityVerifier(
        settings.telegram.bot_token, api_settings.partner_keys, api_settings.auth_max_age_s
    )
    limits = RateLimits(
        api_settings.rate_limit_storage, api_settings.member_rate, api_settings.source_rate
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if api_settings.token_hash_key is None:
            log.warning("token_hash_key_missing", hint="set API_TOKEN_HASH_KEY to HMAC tokens")
        db = async_database(settings, name="api")
        await db.open()
        # Not listening before the schema has every migration of this code: requests would
        # fail on missing columns (runtime.db.schema_gate). A stop meanwhile goes on to
        # uvicorn, which then exits without serving.
        stop = asyncio.Event()
        with schema_gate.stop_on_signals(stop):
            await schema_gate.wait_for_schema(
                db,
                stop=stop,
                recheck_s=schema_gate.DEFAULT_RECHECK_S,
                logical_dbs=schema_gate.PROGRAM_DATABASES["api"],
            )
        yookassa = YooKassaClient(settings, timeout_s=api_settings.provider_timeout_s)
        await yookassa.open()
        app.state.services = Services(
            db=db,
            payments=PaymentService(
                db,
                yookassa,
                api_settings.payment_return_url,
                key_window=api_settings.payment_key_window,
            ),
            tokens={kind: TokenStore(db, kind, hasher) for kind in TOKEN_KINDS},
        )
        # Everything built so far (FastAPI's routes and models, pydantic's validators: some
        # 200k objects) lives as long as the process: kept out of the collector's full passes,
        # which otherwise walk them all and stall requests for tens of milliseconds.
        gc.collect()
        gc.freeze()
        log.info("api_started", db_type=settings.db.type)
        try:
            yield
        finally:
            await yookassa.close()
            await db.close()
            log.info("api_stopped")

    app = FastAPI(
        title="domos API",
        version="1.0",
        description="Subscription status, payments, advert and contract tokens.",
        lifespan=lifespan,
        # Metrics are Prometheus (RequestMetricsMiddleware); FastAPI's built-in OpenTelemetry
        # would otherwise look up the global providers on every request for nothing.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=api_settings.max_body_bytes)
    if api_settings.cors_origins:
        # A Mini App served from a host of its own calls from the member's browser: its
        # preflight is answered, and its responses readable, for the listed origins only. The
        # proof travels in Authorization, so no cookie is ever allowed.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(api_settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotence-Key"],
            allow_credentials=False,
            max_age=600,
        )
    # Added last, so outermost: it counts the 413s too.
    app.add_middleware(RequestMetricsMiddleware, program=settings.program)

    async def require_admin(key: Annotated[str | None, Depends(_api_key_header)]) -> None:
        if api_settings.admin_key is None:
            raise ApiError(403, "admin_disabled", "admin API is disabled: API_ADMIN_KEY is not set")
        if not secret_matches(key, api_settings.admin_key):
            raise ApiError(401, "unauthorized", "a valid X-API-Key header is required")

    app.state.gate = Gate(verifier, limits)
    document_member_security(app)
    _add_service_routes(app)
    _add_subscription_routes(app)
    _add_payment_routes(app, payment_request_model(api_settings.return_url_hosts))
    for kind in TOKEN_KINDS:
        _add_token_routes(app, kind)
        app.include_router(_admin_token_router(kind, require_admin))
    _docs_routes_last(app)
    return app


def _docs_routes_last(app: FastAPI) -> None:
    """FastAPI adds its documentation pages before any route of ours, and the router tries
    routes in order: every API request paid four failed matches first (bench/api). None of
    them shares a path with an API route, so which matches does not change."""
    oauth_redirect = app.swagger_ui_oauth2_redirect_url if app.docs_url else None
    docs = {app.openapi_url, app.docs_url, oauth_redirect, app.redoc_url} - {None}
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) in docs)


def _add_service_routes(app: FastAPI) -> None:
    @app.get(
        "/health",
        response_model=Health,
        tags=["service"],
        responses={503: {"model": Health}},
    )
    async def health(request: Request) -> JSONResponse:
        """Checks that the database answers; 503 when it does not."""
        svc = services(request)
        try:
            await asyncio.wait_for(svc.db.fetchval("SELECT 1"), HEALTH_TIMEOUT_S)
        except (DatabaseError, TimeoutError) as exc:
            log.warning("health_database_unavailable", error=str(exc))
            body = Health(status="unavailable", database=type(exc).__name__)
            return JSONResponse(body.model_dump(), status_code=503)
        return JSONResponse(Health(status="ok", database="ok").model_dump())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _add_subscription_routes(app: FastAPI) -> None:
    async def get_subscription(
        telegram_id: Annotated[int, Path(ge=-TELEGRAM_ID_MAX, le=TELEGRAM_ID_MAX)],
        request: Request,
    ) -> SubscriptionStatus:
        """The member's subscription: the live one (active or grace), else the last one.

        A Telegram proof reads only its own member (403 for any other telegram_id, whether or
        not it exists); a partner key reads any. 404 `user_not_found`: the member never
        started the bot."""
        await admit_member(request, telegram_id)
        return await subscription_status(services(request).db, telegram_id)

    app.router.add_api_route(
        "/v1/subscriptions/{telegram_id}",
        get_subscription,
        methods=["GET"],
        route_class_override=DirectRoute,
        response_model=SubscriptionStatus,
        tags=["subscriptions"],
        responses=responses(*MEMBER_ERRORS, 404),
        openapi_extra={"security": MEMBER_SECURITY},
    )


def _add_payment_routes(app: FastAPI, request_model: type[Any]) -> None:
    async def create_payment(
        body: PaymentCreate,
        idempotence_key: Annotated[
            Text, Header(alias="Idempotence-Key", min_length=1, max_length=128)
        ],
        request: Request,
        response: Response,
    ) -> Payment:
        """Create a YooKassa payment for a tariff and return its confirmation URL.

        The payment is stored with its idempotence key before YooKassa is called. Retrying with
        the same `Idempotence-Key` returns the same payment (200) and never creates another.

        A payment YooKassa never confirmed (502 `provider_unavailable`) is sent again with the
        same key on a retry, for 23 hours after the first request (`PAYMENT_KEY_WINDOW_H`).
        YooKassa forgets keys after about a day, so a later repeat could create a second
        payment beside one the first request may have made: such a retry is refused with 409
        `idempotence_key_expired` and the payment is canceled (payment_monitor cancels it the
        same way if no retry comes). The API never starts a new payment under an old key on its
        own, since the client may no longer mean to charge the member; to pay now, send the
        request again with a new `Idempotence-Key`.

        While the member's saved card is being charged for a live subscription (an automatic
        renewal in flight), paying by hand is refused with 409 `renewal_in_progress`, so the
        member never pays twice for one period; recurrent_payments likewise waits while a
        payment made by hand is open.

        A Telegram proof pays only for its own member (403 otherwise); a partner key for any.
        `return_url` must be an https URL on a host of PAYMENT_RETURN_URL_HOSTS (422 otherwise).
        """
        await admit_member(request, body.telegram_id)
        payment, created = await services(request).payments.create(body, idempotence_key)
        response.status_code = 201 if created else 200
        return payment

    # The request model is built per app (its return_url allow-list); FastAPI reads the
    # annotation object when the string annotation could not name it.
    create_payment.__annotations__["body"] = request_model
    route = app.post(
        "/v1/payments",
        response_model=Payment,
        status_code=201,
        tags=["payments"],
        openapi_extra={"security": MEMBER_SECURITY},
        responses={
            200: {
                "model": Payment,
                "description": "a retry: the payment created before; or the member's open "
                "payment of that tariff, made under another key",
            },
            **responses(*MEMBER_ERRORS, 502),
            404: {
                "model": ErrorBody,
                "description": "`user_not_found` (the member never started the bot);"
                " `tariff_not_found` (no tariff of that code is on sale)",
            },
            409: {
                "model": ErrorBody,
                "description": "`idempotence_key_reused` (the key named another member or"
                " tariff); `idempotence_key_expired` (the key is too old to be repeated to"
                " YooKassa: its payment is canceled, send a new key); `renewal_in_progress`"
                " (the member's saved card is being charged for this subscription right now:"
                " retry once that charge has finished)",
            },
        },
    )
    route(create_payment)


def _add_token_routes(app: FastAPI, kind: TokenKind) -> None:
    async def verify(body: TokenPresented, request: Request) -> TokenVerdict:
        """Whether the token is valid now; does not count a use."""
        await limit_source(request)
        row = await services(request).tokens[kind].find(body.token)
        if row is None:
            return TokenVerdict(valid=False, reason="unknown")
        state = token_state(row, datetime.now(UTC))
        if state != "valid":
            return TokenVerdict(valid=False, reason=state, token_id=row["id"])
        return TokenVerdict(
            valid=True,
            token_id=row["id"],
            scope=row["scope"],
            issued_to=row["issued_to"],
            expires_at=row["expires_at"],
            uses_left=uses_left(row),
        )

    async def use(body: TokenUse, request: Request) -> TokenUsed:
        """Count one use: 401 for an unknown token, 403 when revoked, expired or used up."""
        await limit_source(request)
        return (
            await services(request)
            .tokens[kind]
            .use(
                body.token,
                used_by=body.used_by,
                details=body.details,
                ip=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
            )
        )

    prefix, tags = f"/v1/{kind}/tokens", list[str | Enum]([f"{kind} tokens"])
    for action, endpoint, model, statuses in (
        ("verify", verify, TokenVerdict, COMMON_ERRORS),
        ("use", use, TokenUsed, (*COMMON_ERRORS, 401, 403)),
    ):
        app.router.add_api_route(
            f"{prefix}/{action}",
            endpoint,
            methods=["POST"],
            route_class_override=DirectRoute,
            response_model=model,
            tags=tags,
            responses=responses(*statuses),
            operation_id=f"{action}_{kind}_token",
        )


def _admin_token_router(kind: TokenKind, require_admin: Any) -> APIRouter:
    router = APIRouter(
        prefix=f"/v1/admin/{kind}/tokens",
        tags=[f"{kind} tokens (admin)"],
        dependencies=[Depends(limit_source), Depends(require_admin)],
    )
    admin_errors = (401, 403, 413, 429)

    @router.post(
        "",
        response_model=IssuedToken,
        status_code=201,
        responses=responses(*admin_errors, 422, 503),
        operation_id=f"issue_{kind}_token",
    )
    async def issue(body: TokenIssue, request: Request) -> IssuedToken:
        """Issue a token. The `token` field is shown this once and never stored."""
        return await services(request).tokens[kind].issue(body)

    @router.get(
        "",
        response_model=TokenList,
        responses=responses(*admin_errors, 422, 503),
        operation_id=f"list_{kind}_tokens",
    )
    async def list_tokens(
        request: Request,
        issued_to: Annotated[Text | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> TokenList:
        return TokenList(items=await services(request).tokens[kind].list(issued_to, limit, offset))

    @router.get(
        "/{token_id}",
        response_model=TokenInfo,
        responses=responses(*admin_errors, 404, 422, 503),
        operation_id=f"get_{kind}_token",
    )
    async def get_token(
        token_id: Annotated[int, Path(ge=1, le=INT64_MAX)], request: Request
    ) -> TokenInfo:
        return await services(request).tokens[kind].get(token_id)

    @router.post(
        "/{token_id}/revoke",
        response_model=TokenInfo,
        responses=responses(*admin_errors, 404, 422, 503),
        operation_id=f"revoke_{kind}_token",
    )
    async def revoke(
        token_id: Annotated[int, Path(ge=1, le=INT64_MAX)],
        request: Request,
        body: TokenRevoke | None = None,
    ) -> TokenInfo:
        """Revoke a token; revoking again keeps the first revocation."""
        reason = body.reason if body is not None else TokenRevoke().reason
        return await services(request).tokens[kind].revoke(token_id, reason)

    return router
