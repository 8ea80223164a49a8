"""Unmanaged models over the domain tables (runtime/schema, applied by `domos db upgrade`).

`logical_db` on each model names its logical database; the router uses it to pick the alias.
Field names and table names follow runtime/schema/README.md. Foreign keys are declared only
within one logical database (the other links stay plain ids). One module per group of logical
databases; the app label stays `domain` (the app's package), so tables and state are unchanged.
"""

# ruff: isort: skip_file
# Imported in the one module's order: the registry's model order (content types) stays as it was.
from __future__ import annotations

from services.web.domain.models.main import (
    OUTBOX_STATUSES,
    PAYMENT_STATUSES,
    SUBSCRIPTION_STATUSES,
    Broadcast,
    BroadcastRecipient,
    ChargeAttempt,
    Chat,
    Event,
    EventRegistration,
    MainModel,
    Member,
    Membership,
    ModerationAction,
    MonitorHeartbeat,
    OutboxMessage,
    Payment,
    PaymentMethod,
    Refund,
    ProviderEvent,
    Subscription,
    SubscriptionReminder,
    Survey,
    SurveyResponse,
    Tariff,
)
from services.web.domain.models.tokens import AdvertToken, ContractToken, TokenBase
from services.web.domain.models.inbox import AudioFile, ChatMessage, UsefulMessage, UsefulRule
from services.web.domain.models.listings import (
    NmarketComplex,
    NmarketFlat,
    TradeagentComplex,
    TradeagentFlat,
)

__all__ = [
    "OUTBOX_STATUSES",
    "PAYMENT_STATUSES",
    "SUBSCRIPTION_STATUSES",
    "AdvertToken",
    "AudioFile",
    "Broadcast",
    "BroadcastRecipient",
    "ChargeAttempt",
    "Chat",
    "ChatMessage",
    "ContractToken",
    "Event",
    "EventRegistration",
    "MainModel",
    "Member",
    "Membership",
    "ModerationAction",
    "MonitorHeartbeat",
    "NmarketComplex",
    "NmarketFlat",
    "OutboxMessage",
    "Payment",
    "PaymentMethod",
    "ProviderEvent",
    "Refund",
    "Subscription",
    "SubscriptionReminder",
    "Survey",
    "SurveyResponse",
    "Tariff",
    "TokenBase",
    "TradeagentComplex",
    "TradeagentFlat",
    "UsefulMessage",
    "UsefulRule",
]
