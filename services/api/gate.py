"""The gate of the public API: who calls (services/api/identity.py) and how often
(services/api/ratelimit.py), called by the endpoints, and how the OpenAPI documents it.

FastAPI spends about 10 us solving each dependency of each request (bench/api), so the gate is
no dependency: member operations call `admit_member`, token operations `limit_source`, first
thing. The schemes are added to the OpenAPI by `document_member_security` and named per
operation by MEMBER_SECURITY.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.security import APIKeyHeader

from services.api.errors import ApiError
from services.api.identity import Caller, IdentityVerifier
from services.api.ratelimit import RateLimits

TELEGRAM_PROOF = APIKeyHeader(
    name="Authorization",
    scheme_name="TelegramProof",
    auto_error=False,
    description="A Telegram user's proof: `tma <Mini App initData>` or `tglogin <Login Widget"
    " fields as a query string>`, signed by Telegram for the bot (TELEGRAM_BOT_TOKEN), with an"
    " `auth_date` at most API_AUTH_MAX_AGE_S old. Acts only for that user's telegram_id.",
)
PARTNER_KEY = APIKeyHeader(
    name="X-Partner-Key",
    scheme_name="PartnerKey",
    auto_error=False,
    description="A partner server's key (its SHA-256 in API_PARTNER_KEYS). Acts for any member.",
)
#: The OpenAPI `security` of member operations: either scheme.
MEMBER_SECURITY: list[dict[str, list[str]]] = [
    {TELEGRAM_PROOF.scheme_name: []},
    {PARTNER_KEY.scheme_name: []},
]


def source_of(request: Request) -> str:
    # uvicorn has already replaced it with X-Forwarded-For when a trusted proxy sent the request.
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True)
class Gate:
    """Who may call, and how often: the app's identity checks and rate limits."""

    verifier: IdentityVerifier
    limits: RateLimits

    async def act_for(self, who: Caller, telegram_id: int) -> None:
        """403 when a Telegram user acts for someone else: decided before any lookup, so the
        answer is the same whether that member exists or not. Then the member's budget."""
        if not who.may_act_for(telegram_id):
            raise ApiError(
                403, "forbidden", f"this proof acts only for telegram id {who.telegram_id}"
            )
        await self.limits.hit_member(telegram_id)


def document_member_security(app: FastAPI) -> None:
    """Add the member schemes to the OpenAPI components (no dependency declares them)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            for scheme in (TELEGRAM_PROOF, PARTNER_KEY):
                schemes[scheme.scheme_name] = jsonable_encoder(
                    scheme.model, by_alias=True, exclude_none=True
                )
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def gate_of(request: Request) -> Gate:
    found: Gate = request.app.state.gate
    return found


async def limit_source(request: Request) -> None:
    await gate_of(request).limits.hit_source(source_of(request))


async def admit_member(request: Request, telegram_id: int) -> Caller:
    """The proven caller, allowed to act for `telegram_id`, within its budgets.

    401 before any lookup (counted against the source address), then the rules of `act_for`.
    Called by the endpoint rather than declared as a dependency: FastAPI solves each dependency
    anew on every request, which cost about a tenth of a status request (bench/api)."""
    gate = gate_of(request)
    headers = request.headers
    try:
        found = gate.verifier.identify(
            headers.get("authorization"), headers.get("x-partner-key"), time.time()
        )
    except ApiError:
        await gate.limits.hit_source(source_of(request))
        raise
    if found.partner is None:
        await gate.limits.hit_source(source_of(request))
    await gate.act_for(found, telegram_id)
    return found
