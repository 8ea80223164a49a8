"""Who calls the public API: a Telegram user with Telegram's own proof, or a partner with a key.

- `Authorization: tma <initData>`: a Mini App's launch data, checked with aiogram's
  `safe_parse_webapp_init_data` (HMAC-SHA256 keyed by HMAC("WebAppData", bot token)).
- `Authorization: tglogin <fields>`: the Login Widget's fields as a query string, checked with
  aiogram's `check_signature` (HMAC-SHA256 keyed by SHA-256 of the bot token).
- `X-Partner-Key: <key>`: a server of a partner. Only the SHA-256 of each key is configured
  (API_PARTNER_KEYS); a key is 256 random bits, so an unkeyed hash cannot be reversed by guessing.

Both Telegram proofs carry `auth_date`; one older than API_AUTH_MAX_AGE_S (or from the future,
past a minute of clock skew) is refused, so a leaked proof does not work for ever. A Telegram
user acts only for themselves; a partner acts for any member (it is trusted with membership
data, as the web and the landing page are).

Every refusal is the same 401 `unauthorized` before anything is looked up, so an anonymous caller
learns nothing about members or tariffs.

A Mini App sends the same initData with every call of a session, and checking it (two HMACs,
parsing, aiogram's pydantic model) cost about 0.2 ms, as much as the rest of a status request
(bench/api). So a proof that verified is remembered, keyed by the exact string and the bot token
(LRU, VERIFIED_CACHE_SIZE entries): the same bytes verify the same way every time. Only the
signature's verdict is remembered; freshness is checked again on every request.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiogram.utils.auth_widget import check_signature
from aiogram.utils.web_app import safe_parse_webapp_init_data

from runtime.config import Secret
from runtime.telegram_proof import LOGIN_WIDGET_SCHEME, MINI_APP_SCHEME
from services.api.errors import ApiError

#: Telegram's clock and ours may differ a little; a proof dated later than this is refused.
CLOCK_SKEW_S = 60
#: Proofs are a few hundred bytes; a longer header is refused before any parsing.
MAX_PROOF_CHARS = 4096
#: Verified proofs remembered (about 0.5 KB each): one per member active in the last while.
VERIFIED_CACHE_SIZE = 8192


@dataclass(frozen=True)
class Caller:
    #: The proven Telegram user; None for a partner.
    telegram_id: int | None = None
    #: The partner's name (API_PARTNER_KEYS); None for a Telegram user.
    partner: str | None = None

    def may_act_for(self, telegram_id: int) -> bool:
        return self.partner is not None or self.telegram_id == telegram_id


class Unauthorized(ApiError):
    def __init__(self, why: str) -> None:
        super().__init__(
            401,
            "unauthorized",
            "a valid Telegram proof (Authorization: tma <initData> or tglogin <fields>) or"
            f" X-Partner-Key is required: {why}",
            headers={"WWW-Authenticate": f"{MINI_APP_SCHEME}, {LOGIN_WIDGET_SCHEME}"},
        )


class IdentityVerifier:
    def __init__(
        self, bot_token: Secret | None, partner_keys: Mapping[str, str], max_age_s: int
    ) -> None:
        self._token = bot_token.reveal() if bot_token is not None else None
        self._partners = dict(partner_keys)
        self.max_age_s = max_age_s

    def identify(self, authorization: str | None, partner_key: str | None, now: float) -> Caller:
        """The caller these headers prove, or Unauthorized."""
        if partner_key is not None and authorization is not None:
            # Two identities in one request: which one acts would be a guess.
            raise Unauthorized("send either X-Partner-Key or Authorization, not both")
        if partner_key is not None:
            name = self._partners.get(hashlib.sha256(partner_key.encode()).hexdigest())
            if name is None:
                raise Unauthorized("unknown partner key")
            return Caller(partner=name)
        if not authorization:
            raise Unauthorized("no credentials")
        if len(authorization) > MAX_PROOF_CHARS:
            raise Unauthorized("the proof is too long")
        if self._token is None:
            raise Unauthorized("Telegram proofs are off: the API has no TELEGRAM_BOT_TOKEN")
        scheme, _, credential = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == MINI_APP_SCHEME:
            telegram_id, auth_date = self._mini_app(credential.strip())
        elif scheme == LOGIN_WIDGET_SCHEME:
            telegram_id, auth_date = self._login_widget(credential.strip())
        else:
            raise Unauthorized(f"unknown Authorization scheme {scheme[:20]!r}")
        if auth_date > now + CLOCK_SKEW_S:
            raise Unauthorized("auth_date is in the future")
        if now - auth_date > self.max_age_s:
            raise Unauthorized("the proof has expired (auth_date too old); sign in again")
        return Caller(telegram_id=telegram_id)

    def _mini_app(self, init_data: str) -> tuple[int, float]:
        assert self._token is not None
        return verified_mini_app(self._token, init_data)

    def _login_widget(self, query: str) -> tuple[int, float]:
        assert self._token is not None
        return verified_login(self._token, query)


@functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)
def verified_mini_app(token: str, init_data: str) -> tuple[int, float]:
    """(telegram id, auth_date) of initData signed for `token`; Unauthorized (never cached)."""
    try:
        data = safe_parse_webapp_init_data(token, init_data, loads=json.loads)
    except ValueError:  # a bad signature, or signed data that is no initData
        raise Unauthorized("initData signature is not valid") from None
    if data.user is None:
        raise Unauthorized("initData names no user")
    return data.user.id, data.auth_date.timestamp()


@functools.lru_cache(maxsize=VERIFIED_CACHE_SIZE)
def verified_login(token: str, query: str) -> tuple[int, float]:
    """(telegram id, auth_date) of Login Widget data signed for `token`; Unauthorized."""
    try:
        fields = dict(parse_qsl(query, strict_parsing=True))
    except ValueError:
        raise Unauthorized("Login Widget data is not a query string") from None
    digest = fields.pop("hash", "")
    try:
        valid = bool(digest) and check_signature(token, digest, **fields)
    except TypeError:  # a field named like check_signature's own `token` parameter
        valid = False
    if not valid:
        raise Unauthorized("Login Widget signature is not valid")
    try:
        return int(fields["id"]), float(int(fields["auth_date"]))
    except (KeyError, ValueError):
        raise Unauthorized("Login Widget data needs id and auth_date") from None
