"""Request and response models. Every text input is `Text`: checked to be storable on both
backends, so a NUL character is a 422 rather than a driver error."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, create_model

from services.common.text import Text

#: Telegram ids and database keys are 64-bit.
INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of the supported range") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
#: Telegram ids have at most 52 significant bits (Bot API docs); a bound a double holds exactly,
#: so every client's JSON parser (and schemathesis) reads the documented limit as written.
TELEGRAM_ID_MAX = 2**53 - 1
TelegramId = Annotated[int, Field(ge=-TELEGRAM_ID_MAX, le=TELEGRAM_ID_MAX)]
TokenKind = Literal["advert", "contract"]
SubscriptionState = Literal["active", "grace", "expired", "canceled", "none"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- subscriptions ---------------------------------------------------------------------------


class SubscriptionStatus(BaseModel):
    telegram_id: int
    #: `none` when the member never subscribed.
    status: SubscriptionState
    #: True while the member has access: active, or in a grace period not yet run out (a
    #: grace that ran out is `expired` here before tsmonitor marks it so).
    is_active: bool
    tariff_code: str | None = None
    current_period_end: datetime | None = None
    grace_until: datetime | None = None
    auto_renew: bool | None = None


# --- payments ----------------------------------------------------------------------------------


class PaymentCreate(Strict):
    telegram_id: TelegramId
    tariff_code: Annotated[Text, Field(min_length=1, max_length=64)]
    #: Ask YooKassa to save the card for auto-renewal (the client must have told the payer the
    #: card is charged every period). Omitted: saved unless the member stopped auto-renewal
    #: themselves (/cancel_autorenew). A saved card never undoes that stop: only the member's
    #: /autorenew_on does.
    save_payment_method: bool | None = None
    #: Where the payer returns after the checkout; default PAYMENT_RETURN_URL. Only hosts of
    #: PAYMENT_RETURN_URL_HOSTS: payment_request_model narrows it per app.
    return_url: str | None = None


def return_url_pattern(hosts: tuple[str, ...]) -> str:
    """An https URL whose host is exactly one of `hosts` (no port, no user info)."""
    names = "|".join(re.escape(host) for host in hosts)
    return rf"^https://({names})([/?#][^\s\u0000]*)?$"


def payment_request_model(hosts: tuple[str, ...]) -> type[PaymentCreate]:
    """PaymentCreate whose `return_url` must point at one of `hosts`: anything else would make
    the checkout an open redirect (a real YooKassa page that sends the payer anywhere). The
    pattern is in the schema, so clients and schemathesis see the rule the API enforces."""
    pattern = return_url_pattern(hosts)
    compiled = re.compile(pattern)

    def allowed(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be an https URL on an allowed host ({', '.join(hosts)})")
        return value

    url = Annotated[
        Text,
        Field(max_length=2048, json_schema_extra={"pattern": pattern}),
        AfterValidator(allowed),
    ]
    model: type[PaymentCreate] = create_model(
        "PaymentCreate",
        __base__=PaymentCreate,
        __module__=__name__,
        return_url=(url | None, None),
    )
    return model


class Amount(BaseModel):
    value: str
    currency: str


class Payment(BaseModel):
    id: int
    status: Literal["created", "pending", "waiting_for_capture", "succeeded", "canceled"]
    kind: Literal["first", "renewal"]
    telegram_id: int
    tariff_code: str
    amount: Amount
    confirmation_url: str | None = None
    provider_payment_id: str | None = None
    cancellation_reason: str | None = None
    created_at: datetime


# --- tokens ------------------------------------------------------------------------------------


class TokenIssue(Strict):
    issued_to: Annotated[Text, Field(min_length=1, max_length=200)]
    scope: Annotated[Text, Field(min_length=1, max_length=200)]
    note: Annotated[Text, Field(max_length=2000)] | None = None
    issued_by: Annotated[Text, Field(max_length=200)] | None = None
    expires_at: UtcDatetime | None = None
    #: None: unlimited.
    max_uses: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None


class TokenInfo(BaseModel):
    id: int
    kind: TokenKind
    token_prefix: str | None
    issued_to: str
    issued_by: str | None = None
    scope: str
    note: str | None = None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    max_uses: int | None = None
    use_count: int
    last_used_at: datetime | None = None
    state: Literal["valid", "revoked", "expired", "exhausted"]


class IssuedToken(TokenInfo):
    #: The token itself: shown once, never stored.
    token: str


class TokenList(BaseModel):
    items: list[TokenInfo]


class TokenPresented(Strict):
    token: Annotated[Text, Field(min_length=1, max_length=256)]


class TokenUse(TokenPresented):
    used_by: Annotated[Text, Field(max_length=200)] | None = None
    details: Annotated[Text, Field(max_length=2000)] | None = None


class TokenRevoke(Strict):
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = "revoked by admin"


class TokenVerdict(BaseModel):
    valid: bool
    #: Why it is not valid; None when valid.
    reason: Literal["unknown", "revoked", "expired", "exhausted"] | None = None
    token_id: int | None = None
    scope: str | None = None
    issued_to: str | None = None
    expires_at: datetime | None = None
    #: Uses left; None when unlimited (or not valid).
    uses_left: int | None = None


class TokenUsed(BaseModel):
    token_id: int
    scope: str
    issued_to: str
    use_count: int
    uses_left: int | None = None


# --- health ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
