"""The baseline of bench/api: a plain Starlette app doing the same queries with raw psycopg.

No DB layer, no FastAPI, no validation models, no metrics: one psycopg_pool, the two queries, JSON.
Run as `uvicorn bench.api.baseline:app` with BASELINE_DATABASE_URL and BASELINE_TOKEN_HASH_KEY.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POOL = AsyncConnectionPool(
    os.environ.get("BASELINE_DATABASE_URL", ""),
    min_size=4,
    max_size=int(os.environ.get("BASELINE_POOL_MAX_SIZE", "10")),
    kwargs={"autocommit": True, "row_factory": dict_row},
    open=False,
)
KEY = os.environ.get("BASELINE_TOKEN_HASH_KEY", "").encode()

STATUS_SQL = (
    "SELECT u.id AS user_id, s.status, s.current_period_end, s.grace_until, s.auto_renew, "
    "t.code AS tariff_code FROM main.users u "
    "LEFT JOIN main.subscriptions s ON s.user_id = u.id "
    "LEFT JOIN main.tariffs t ON t.id = s.tariff_id WHERE u.telegram_id = %s "
    "ORDER BY CASE WHEN s.status IN ('active', 'grace') THEN 0 ELSE 1 END, "
    "s.current_period_end DESC, s.id DESC LIMIT 1"
)
TOKEN_SQL = (
    "SELECT id, token_hash, scope, issued_to, expires_at, revoked_at, max_uses, use_count "
    "FROM advert.tokens WHERE token_hash = %s"
)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status, media_type="application/json")


async def subscription(request: Request) -> Response:
    telegram_id = int(request.path_params["telegram_id"])
    async with POOL.connection() as conn:
        row = await (await conn.execute(STATUS_SQL, (telegram_id,))).fetchone()
    if row is None:
        return _json({"error": "not found"}, 404)
    status = row["status"] or "none"
    return _json(
        {
            "telegram_id": telegram_id,
            "status": status,
            "is_active": status in ("active", "grace"),
            "tariff_code": row["tariff_code"],
            "current_period_end": row["current_period_end"],
            "grace_until": row["grace_until"],
            "auto_renew": row["auto_renew"],
        }
    )


async def verify(request: Request) -> Response:
    token = (await request.json())["token"]
    token_hash = hmac.new(KEY, token.encode(), hashlib.sha256).hexdigest()
    async with POOL.connection() as conn:
        row = await (await conn.execute(TOKEN_SQL, (token_hash,))).fetchone()
    if row is None:
        return _json({"valid": False, "reason": "unknown"})
    now = datetime.now(UTC)
    valid = row["revoked_at"] is None and (row["expires_at"] is None or row["expires_at"] > now)
    return _json(
        {
            "valid": valid,
            "token_id": row["id"],
            "scope": row["scope"],
            "issued_to": row["issued_to"],
            "expires_at": row["expires_at"],
        }
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await POOL.open()
    yield
    await POOL.close()


app = Starlette(
    routes=[
        Route("/v1/subscriptions/{telegram_id}", subscription),
        Route("/v1/advert/tokens/verify", verify, methods=["POST"]),
    ],
    lifespan=lifespan,
)
