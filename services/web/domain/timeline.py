"""A member's timeline: payments, subscription changes, bans and unbans, messages sent, merged in
time order (newest first) from the tables that already record them.

Subscription changes have no history table of their own; they are read from what records them:
the subscription row (created, canceled, expired), the notices tsmonitor and recurrent_payments
wrote once each in `subscription_reminders` (grace started, a charge failed, auto-renewal
stopped), paid periods from the payments, declined auto-renewal charges from `charge_attempts`,
refunds from `refunds`.
Messages are the outbox rows to the member's private chat (`outbox_chat_idx`).

Each source is shown only to staff who may view its own table (view_payment, view_refund, …):
the member's view permission alone does not open payments or message texts, and every link then
leads to a page its reader may open.

Pages are cut by time: each source is asked for its newest `limit` entries before the cursor,
and a page does not end between entries of the same instant from different sources (one
transaction stamps several rows alike on PostgreSQL), so the next page's `before` skips none.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from services.web.domain import models as m
from services.web.domain.fields import utc_instant
from services.web.domain.permissions import may_view

#: Entries per page.
PAGE = 200
#: Subscription notices that mark a change of state (the T-N reminders are just messages).
STATE_NOTICES = {
    "grace_started": "Начался льготный период",
    "charge_failed": "Автопродление: списание не прошло",
    "auto_renew_stopped": "Автопродление остановлено",
}
PAYMENT_STATUS = {
    "created": "создан",
    "pending": "ожидает оплаты",
    "waiting_for_capture": "ожидает подтверждения",
    "succeeded": "оплачен",
    "canceled": "отменён",
}
#: Timeline kinds: label and CSS class.
KINDS = {
    "payment": "платёж",
    "subscription": "подписка",
    "moderation": "бан / разбан",
    "message": "сообщение",
}


@dataclass(frozen=True)
class Entry:
    at: datetime
    kind: str
    title: str
    detail: str = ""
    #: The admin page of the row it comes from.
    url: str | None = None

    @property
    def kind_label(self) -> str:
        return KINDS[self.kind]


def _change_url(model: type[Any], pk: int) -> str:
    meta = model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk])


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:.2f} {currency}"


def _newest(
    queryset: QuerySet[Any], field: str, before: datetime | None, limit: int
) -> QuerySet[Any]:
    if before is not None:
        queryset = queryset.filter(**{f"{field}__lt": before})
    return queryset.order_by(f"-{field}", "-id")[:limit]


def _payments(member: m.Member, before: datetime | None, limit: int) -> Iterator[Entry]:
    rows = m.Payment.objects.filter(user=member).select_related("tariff")
    # A payment is placed when it was paid, else when it was made.
    rows = rows.annotate(at=Coalesce(F("paid_at"), F("created_at")))
    for payment in _newest(rows, "at", before, limit):
        detail = [
            f"тариф «{payment.tariff.title}»",
            "продление" if payment.kind == "renewal" else "первый",
        ]
        if payment.applied_period_end:
            detail.append(f"оплачено до {timezone.localtime(payment.applied_period_end):%d.%m.%Y}")
        if payment.cancellation_reason:
            detail.append(f"причина: {payment.cancellation_reason}")
        status = PAYMENT_STATUS.get(payment.status, payment.status)
        yield Entry(
            at=payment.at,
            kind="payment",
            title=f"Платёж {_money(payment.amount_minor, payment.currency)}: {status}",
            detail=", ".join(detail),
            url=_change_url(m.Payment, payment.pk),
        )


def _declined_charges(member: m.Member, before: datetime | None, limit: int) -> Iterator[Entry]:
    rows = m.ChargeAttempt.objects.filter(subscription__user=member, status="declined")
    rows = rows.annotate(at=Coalesce(F("finished_at"), F("created_at")))
    for attempt in _newest(rows, "at", before, limit):
        yield Entry(
            at=attempt.at,
            kind="payment",
            title=f"Автосписание {_money(attempt.amount_minor, attempt.currency)} отклонено",
            detail=f"{attempt.decline_reason or 'причина неизвестна'} ({attempt.decline_kind})",
            url=_change_url(m.ChargeAttempt, attempt.pk),
        )


def _refunds(member: m.Member, before: datetime | None, limit: int) -> Iterator[Entry]:
    rows = m.Refund.objects.filter(payment__user=member)
    for refund in _newest(rows, "created_at", before, limit):
        kind = "полный" if refund.kind == "full" else "частичный"
        effect = (
            "оплаченный период отменён" if refund.effect == "access_ended" else "доступ не менялся"
        )
        yield Entry(
            at=refund.created_at,
            kind="payment",
            title=f"Возврат {_money(refund.amount_minor, refund.currency)} ({kind})",
            detail=effect,
            url=_change_url(m.Refund, refund.pk),
        )


def _subscriptions(member: m.Member) -> Iterator[Entry]:
    # A member has a handful of subscriptions (one per paid stretch): read them all.
    for sub in m.Subscription.objects.filter(user=member).select_related("tariff"):
        url = _change_url(m.Subscription, sub.pk)
        end = timezone.localtime(sub.current_period_end)
        yield Entry(
            sub.created_at,
            "subscription",
            f"Подписка оформлена: тариф «{sub.tariff.title}»",
            f"период до {end:%d.%m.%Y}",
            url,
        )
        if sub.canceled_at:
            yield Entry(sub.canceled_at, "subscription", "Подписка отменена", "", url)
        if sub.expired_at:
            yield Entry(sub.expired_at, "subscription", "Подписка истекла", "", url)
    notices = m.SubscriptionReminder.objects.filter(
        subscription__user=member, kind__in=STATE_NOTICES
    )
    for notice in notices:
        yield Entry(
            notice.sent_at,
            "subscription",
            STATE_NOTICES[notice.kind],
            f"период до {timezone.localtime(notice.period_end):%d.%m.%Y}",
            _change_url(m.Subscription, notice.subscription_id),
        )


def _moderation(member: m.Member, before: datetime | None, limit: int) -> Iterator[Entry]:
    rows = m.ModerationAction.objects.filter(user=member).select_related("chat")
    for action in _newest(rows, "requested_at", before, limit):
        verb = "Бан" if action.action == "ban" else "Разбан"
        yield Entry(
            action.requested_at,
            "moderation",
            f"{verb} в чате «{action.chat}»",
            f"причина: {action.reason}; {action.status}"
            + (f": {action.last_error}" if action.last_error else ""),
            _change_url(m.ModerationAction, action.pk),
        )


def _messages(member: m.Member, before: datetime | None, limit: int) -> Iterator[Entry]:
    rows = m.OutboxMessage.objects.filter(chat_id=member.telegram_id)
    for message in _newest(rows, "created_at", before, limit):
        state = message.status
        if message.status == "sent" and message.sent_at:
            state = f"отправлено {timezone.localtime(message.sent_at):%d.%m.%Y %H:%M}"
        elif message.last_error:
            state = f"{message.status}: {message.last_error}"
        yield Entry(
            message.created_at,
            "message",
            f"Сообщение ({message.kind}): {state}",
            message.text[:300] + ("…" if len(message.text) > 300 else ""),
            _change_url(m.OutboxMessage, message.pk),
        )


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    #: `before` of the next (older) page; None on the last one.
    older: datetime | None


def _subscriptions_before(member: m.Member, before: datetime | None, limit: int) -> Iterator[Entry]:
    return (e for e in _subscriptions(member) if before is None or e.at < before)


Source = Callable[[m.Member, datetime | None, int], Iterator[Entry]]
#: Each source with the table whose view permission it needs: its rows and links are that table's.
SOURCES: tuple[tuple[type[Any], Source], ...] = (
    (m.Payment, _payments),
    (m.ChargeAttempt, _declined_charges),
    (m.Refund, _refunds),
    (m.Subscription, _subscriptions_before),
    (m.ModerationAction, _moderation),
    (m.OutboxMessage, _messages),
)
SOURCE_MODELS = frozenset(model for model, _ in SOURCES)


def member_timeline(
    member: m.Member,
    *,
    before: datetime | None = None,
    limit: int = PAGE,
    tables: Collection[type[Any]] = SOURCE_MODELS,
) -> Page:
    """The member's entries from the sources whose table is in `tables`."""
    sources = [
        entry
        for model, source in SOURCES
        if model in tables
        for entry in source(member, before, limit)
    ]
    ordered = sorted(sources, key=lambda entry: entry.at, reverse=True)
    if len(ordered) <= limit:
        return Page(ordered, None)
    cut = limit
    while cut < len(ordered) and ordered[cut].at == ordered[cut - 1].at:
        cut += 1  # the whole group of one instant stays on this page
    if cut == len(ordered):
        return Page(ordered, None)
    return Page(ordered[:cut], ordered[cut - 1].at)


def _cursor(text: str | None) -> datetime | None:
    """The `before` parameter: an ISO-8601 instant with its offset that has a UTC form, or 404."""
    if not text:
        return None
    try:
        before = parse_datetime(text)  # ValueError: well-formed but no such date (02-30)
        if before is None or before.tzinfo is None:
            raise ValueError(text)
        return utc_instant(before)
    except (ValueError, ValidationError):
        raise Http404("before: an ISO-8601 instant with its offset") from None


def timeline_view(
    request: HttpRequest, object_id: int, *, member_admin: admin.ModelAdmin[m.Member]
) -> HttpResponse:
    """The timeline page, for staff who may see the member."""
    member = get_object_or_404(m.Member, pk=object_id)
    if not member_admin.has_view_permission(request, member):
        raise PermissionDenied
    before = _cursor(request.GET.get("before"))
    tables = {model for model in SOURCE_MODELS if may_view(request, model)}
    page = member_timeline(member, before=before, tables=tables)
    context = {
        **admin.site.each_context(request),
        "title": f"Хронология: {member}",
        "opts": m.Member._meta,
        "member": member,
        "page": page,
        "hidden": sorted(str(model._meta.verbose_name_plural) for model in SOURCE_MODELS - tables),
        "before": before,
        "older": page.older.isoformat() if page.older else None,
    }
    return render(request, "domain/member_timeline.html", context)
