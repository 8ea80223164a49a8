"""Staff admin over the domain tables.

Read-only where the monitors own the state (payments, subscriptions, outbox, moderation, the
inbox, listings): staff can look, filter and search, not edit behind a monitor's back. Editable
where an operator is the owner: tariffs, events, useful-message rules. The one write on monitor
state is explicit: re-queueing outbox dead letters.

What every table's admin does with hostile values (a NUL, ids that are no key, values the
database cannot compare) is the site's, for Django's and django-axes's tables alike:
services.web.nul_guard and services.web.admin_site.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import URLPattern, path
from django.utils import timezone

from services.web.domain import broadcast_views, export, timeline
from services.web.domain import models as m


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """View-only: the rows belong to a monitor or the bot."""

    list_per_page = 50
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OperatorOwnedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Rows an operator owns and edits: short texts get one-line inputs, not text areas.

    The domain tables declare every string TEXT, which Django's admin renders as a textarea.
    """

    #: Text fields that stay multi-line.
    long_texts: tuple[str, ...] = ("description",)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if (
            isinstance(db_field, models.TextField)
            and not db_field.choices
            and db_field.name not in self.long_texts
        ):
            kwargs["widget"] = forms.TextInput(attrs={"class": "vTextField"})
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class SubscriptionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.Subscription
    fields = ("tariff", "status", "current_period_end", "grace_until", "auto_renew")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.Member)
class MemberAdmin(ReadOnlyAdmin):
    list_display = (
        "telegram_id",
        "username",
        "first_name",
        "last_name",
        "role",
        "is_reachable",
        "created_at",
    )
    list_filter = ("role", "is_reachable", "subscription__status")
    search_fields = ("=telegram_id", "username", "first_name", "last_name", "phone")
    inlines = (SubscriptionInline,)

    def get_urls(self) -> list[URLPattern]:
        # The staff tasks about members: a member's timeline (linked from the member's page,
        # admin/domain/member/change_form.html) and broadcasts (from the list's tools).
        view = self.admin_site.admin_view
        return [
            path(
                # Members' keys are integers: "abc" or "broadcasts" is no member (404), not a
                # query that fails.
                "<int:object_id>/timeline/",
                view(partial(timeline.timeline_view, member_admin=self)),
                name="domain_member_timeline",
            ),
            path(
                "broadcasts/",
                view(broadcast_views.broadcast_list),
                name="domain_member_broadcasts",
            ),
            path(
                "broadcasts/new/",
                view(broadcast_views.broadcast_new),
                name="domain_member_broadcast_new",
            ),
            path(
                "broadcasts/<int:broadcast_id>/",
                view(broadcast_views.broadcast_detail),
                name="domain_member_broadcast",
            ),
            path(
                "broadcasts/<int:broadcast_id>/resume/",
                view(broadcast_views.broadcast_resume),
                name="domain_member_broadcast_resume",
            ),
            *super().get_urls(),
        ]


@admin.register(m.Tariff)
class TariffAdmin(OperatorOwnedAdmin):
    list_display = ("code", "title", "price_minor", "currency", "period_days", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "title")
    readonly_fields = ("created_at", "updated_at")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # payments keep their tariff: switch is_active off instead


@admin.register(m.Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "user",
        "tariff",
        "status",
        "current_period_end",
        "grace_until",
        "auto_renew",
        "next_charge_at",
    )
    list_filter = (
        "status",
        "auto_renew",
        "tariff",
        ("current_period_end", admin.DateFieldListFilter),
    )
    search_fields = ("=user__telegram_id", "user__username")
    list_select_related = ("user", "tariff")


class RefundInline(admin.TabularInline):  # type: ignore[type-arg]
    """A payment's refunds, read-only (payment_monitor records them)."""

    model = m.Refund
    fields = ("provider_refund_id", "amount_minor", "kind", "effect", "subscription", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "provider_refund_id",
        "payment",
        "amount_minor",
        "currency",
        "kind",
        "effect",
        "subscription",
        "created_at",
    )
    list_filter = ("kind", "effect", ("created_at", admin.DateFieldListFilter))
    search_fields = (
        "=provider_refund_id",
        "=payment__provider_payment_id",
        "=payment__user__telegram_id",
    )
    list_select_related = ("payment",)


@admin.register(m.Payment)
class PaymentAdmin(ReadOnlyAdmin):
    inlines = (RefundInline,)
    list_display = (
        "id",
        "provider_payment_id",
        "user",
        "kind",
        "amount_minor",
        "currency",
        "status",
        "created_at",
        "paid_at",
        "processed_at",
    )
    list_filter = (
        "status",
        "kind",
        ("created_at", admin.DateFieldListFilter),
        ("paid_at", admin.DateFieldListFilter),
        "cancellation_reason",
    )
    search_fields = (
        "=provider_payment_id",
        "=idempotence_key",
        "=user__telegram_id",
        "user__username",
    )
    list_select_related = ("user",)

    def get_urls(self) -> list[URLPattern]:
        # CSV of a date range, linked from the list's tools (admin/domain/payment/change_list.html).
        export_view = partial(export.export_view, payment_admin=self)
        return [
            path("export/", self.admin_site.admin_view(export_view), name="domain_payment_export"),
            *super().get_urls(),
        ]


@admin.register(m.PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "method_type", "card_last4", "is_saved", "revoked_at")
    list_filter = ("method_type", "is_saved")
    search_fields = ("=user__telegram_id", "=provider_method_id")


@admin.register(m.ChargeAttempt)
class ChargeAttemptAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "subscription",
        "period_end",
        "attempt_no",
        "status",
        "decline_kind",
        "decline_reason",
        "next_retry_at",
    )
    list_filter = ("status", "decline_kind", "decline_reason")
    search_fields = ("=idempotence_key", "=subscription__user__telegram_id")


@admin.register(m.ProviderEvent)
class ProviderEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "event_type",
        "object_id",
        "received_at",
        "processed_at",
        "outcome",
        "attempts",
    )
    list_filter = ("event_type", "outcome", ("received_at", admin.DateFieldListFilter))
    search_fields = ("=object_id", "event_key")


@admin.register(m.Chat)
class ChatAdmin(ReadOnlyAdmin):
    list_display = ("telegram_chat_id", "title", "username", "kind", "is_managed")
    list_filter = ("kind", "is_managed")
    search_fields = ("=telegram_chat_id", "title", "username")
    actions = ("mark_paid", "unmark_paid")

    # A paid chat is where receipts invite paying members and whose join requests the bot
    # approves: only staff may say which chats those are (or PAID_CHAT_IDS), never the bot.
    @admin.action(description="Сделать платным чатом", permissions=["mark_paid"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = queryset.exclude(kind="private").update(is_managed=True, updated_at=timezone.now())
        self.message_user(request, f"Платных чатов добавлено: {count}", messages.SUCCESS)

    @admin.action(description="Больше не платный чат", permissions=["mark_paid"])
    def unmark_paid(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        count = queryset.update(is_managed=False, updated_at=timezone.now())
        self.message_user(request, f"Больше не платные: {count}", messages.SUCCESS)

    def has_mark_paid_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("domain.change_chat"))


@admin.register(m.Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("user", "chat", "status", "joined_at", "banned_at", "unbanned_at")
    list_filter = ("status", "chat")
    search_fields = ("=user__telegram_id", "user__username")


@admin.register(m.OutboxMessage)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "chat_id",
        "status",
        "attempts",
        "last_error_code",
        "last_error",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "kind", "last_error_code", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=chat_id", "dedupe_key", "text")
    actions = ("requeue_dead_letters",)

    @admin.action(description="Повторить отправку (только dead)", permissions=["requeue"])
    def requeue_dead_letters(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        now = timezone.now()
        count = queryset.filter(status="dead").update(
            status="queued",
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            last_error_code=None,
            updated_at=now,
        )
        self.message_user(request, f"В очередь снова: {count}", messages.SUCCESS)

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        # A write on monitor state: the change permission, even though the rows' forms stay
        # read-only (has_change_permission is False for every staff member).
        return bool(request.user.has_perm("domain.change_outboxmessage"))


@admin.register(m.ModerationAction)
class ModerationActionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "action",
        "user",
        "chat",
        "reason",
        "status",
        "attempts",
        "requested_at",
        "done_at",
    )
    list_filter = ("action", "status", "reason", ("requested_at", admin.DateFieldListFilter))
    search_fields = ("=user__telegram_id", "user__username", "idempotence_key")
    list_select_related = ("user", "chat")


@admin.register(m.MonitorHeartbeat)
class MonitorHeartbeatAdmin(ReadOnlyAdmin):
    list_display = (
        "monitor",
        "instance",
        "last_outcome",
        "last_success_at",
        "last_tick_at",
        "items_processed_total",
        "last_error",
    )
    list_filter = ("last_outcome",)


@admin.register(m.Event)
class EventAdmin(OperatorOwnedAdmin):
    list_display = ("title", "starts_at", "location", "capacity", "status", "announced_at")
    list_filter = ("status", ("starts_at", admin.DateFieldListFilter))
    search_fields = ("title", "location")
    readonly_fields = ("announced_at", "created_at", "updated_at")


@admin.register(m.EventRegistration)
class EventRegistrationAdmin(ReadOnlyAdmin):
    list_display = ("event", "user", "status", "registered_at", "canceled_at")
    list_filter = ("status", "event")
    search_fields = ("=user__telegram_id", "user__username", "event__title")


class SurveyResponseInline(admin.TabularInline):  # type: ignore[type-arg]
    model = m.SurveyResponse
    fields = ("question_key", "answer", "answered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.Survey)
class SurveyAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "month", "status", "sent_at", "reminded_at", "answered_at")
    list_filter = ("month", "status")
    search_fields = ("=user__telegram_id", "user__username")
    inlines = (SurveyResponseInline,)


@admin.register(m.SurveyResponse)
class SurveyResponseAdmin(ReadOnlyAdmin):
    list_display = ("survey", "question_key", "answer", "answered_at")
    list_filter = ("question_key", "survey__month")
    search_fields = ("answer", "=survey__user__telegram_id")


@admin.register(m.AdvertToken, m.ContractToken)
class TokenAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "token_prefix",
        "issued_to",
        "scope",
        "use_count",
        "max_uses",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("scope",)
    search_fields = ("issued_to", "token_prefix", "note")


@admin.register(m.ChatMessage)
class ChatMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "chat_title",
        "kind",
        "from_username",
        "text",
        "message_date",
        "parse_status",
    )
    list_filter = ("kind", "parse_status", ("message_date", admin.DateFieldListFilter))
    search_fields = ("text", "=chat_id", "from_username")


@admin.register(m.UsefulRule)
class UsefulRuleAdmin(OperatorOwnedAdmin):
    list_display = ("kind", "pattern", "weight", "is_active")
    list_filter = ("kind", "is_active")
    search_fields = ("pattern",)


@admin.register(m.UsefulMessage)
class UsefulMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "chat_id", "score", "message_date", "text")
    search_fields = ("text",)


@admin.register(m.AudioFile)
class AudioFileAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "chat_id",
        "from_user_id",
        "duration_s",
        "status",
        "attempts",
        "downloaded_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("=file_unique_id", "=chat_id", "=from_user_id")


@admin.register(m.NmarketComplex, m.TradeagentComplex)
class ComplexAdmin(ReadOnlyAdmin):
    list_display = ("name", "district", "developer", "first_seen_at", "last_seen_at")
    list_filter = ("district",)
    search_fields = ("name", "normalized_name", "developer")


@admin.register(m.NmarketFlat, m.TradeagentFlat)
class FlatAdmin(ReadOnlyAdmin):
    list_display = (
        "complex",
        "building",
        "rooms",
        "area_dm2",
        "floor",
        "price_minor",
        "commission_text",
        "last_seen_at",
    )
    list_filter = ("rooms",)
    search_fields = ("complex__name", "external_key")
    list_select_related = ("complex",)
