"""The broadcast pages of the admin (under the members' admin): the list, compose -> preview ->
confirm, and each broadcast's progress.

Creating one needs `domain.add_broadcast` (superusers have it): a message to the whole community
is a write, not a look. Seeing them needs `view_broadcast` or `add_broadcast`.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone

from services.common.text import storable
from services.web.domain import broadcasts
from services.web.domain import models as m

ADD = "domain.add_broadcast"
VIEW = "domain.view_broadcast"
ALL_ACTIVE = "active"


def can_add(request: HttpRequest) -> bool:
    return bool(request.user.has_perm(ADD))


def _require_view(request: HttpRequest) -> None:
    if not (request.user.has_perm(VIEW) or can_add(request)):
        raise PermissionDenied


def _require_add(request: HttpRequest) -> None:
    if not can_add(request):
        raise PermissionDenied


def _storable(value: str) -> None:
    try:
        storable(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class MessageTextField(forms.CharField):
    def to_python(self, value: Any) -> str | None:
        # Browsers submit a textarea's line breaks as CRLF; Telegram's are LF. Before the
        # length check, which counts what Telegram will.
        text = super().to_python(value)
        if text is None:
            return None
        return text.replace("\r\n", "\n").replace("\r", "\n")


class BroadcastForm(forms.Form):
    text = MessageTextField(
        label="Текст",
        max_length=broadcasts.MAX_TEXT,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80}),
        validators=[_storable],
        help_text="Обычный текст, как его увидят в Telegram (до 4096 символов).",
    )
    audience = forms.ChoiceField(label="Кому")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [(ALL_ACTIVE, "Все активные участники")]
        choices += [
            (str(tariff.pk), f"Участники тарифа «{tariff.title}»")
            for tariff in m.Tariff.objects.order_by("title")
        ]
        audience = self.fields["audience"]
        assert isinstance(audience, forms.ChoiceField)
        audience.choices = choices

    def audience_value(self) -> broadcasts.Audience:
        value = self.cleaned_data["audience"]
        if value == ALL_ACTIVE:
            return broadcasts.Audience()
        return broadcasts.Audience(tariff=m.Tariff.objects.get(pk=int(value)))


class ConfirmForm(BroadcastForm):
    """The preview's form: the same fields, hidden, and the token that makes it count once."""

    token = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["text"].widget = forms.HiddenInput()
        self.fields["audience"].widget = forms.HiddenInput()


def _per_day() -> int:
    return int(settings.BROADCASTS_PER_DAY)


def _context(request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
    today = timezone.localdate()
    return {
        **admin.site.each_context(request),
        "title": title,
        "opts": m.Member._meta,
        "can_add": can_add(request),
        "per_day": _per_day(),
        "sent_today": broadcasts.sent_today(today),
        **extra,
    }


def broadcast_list(request: HttpRequest) -> HttpResponse:
    _require_view(request)
    rows = [
        (broadcast, broadcasts.progress(broadcast))
        for broadcast in m.Broadcast.objects.select_related("tariff").order_by("-id")[:50]
    ]
    return render(request, "domain/broadcast_list.html", _context(request, "Рассылки", rows=rows))


def broadcast_new(request: HttpRequest) -> HttpResponse:
    """GET: the compose form. POST step=preview: the preview and the confirmation form.
    POST step=send: create and queue it (the token makes a repeated submit a no-op)."""
    _require_add(request)
    step = request.POST.get("step") if request.method == "POST" else None
    if step == "send":
        return _send(request)
    # "edit" comes back from the preview with the fields filled in.
    form = BroadcastForm(request.POST if step in ("preview", "edit") else None)
    if step == "preview" and form.is_valid():
        return _preview(request, form, token=str(uuid.uuid4()))
    return render(
        request, "domain/broadcast_form.html", _context(request, "Новая рассылка", form=form)
    )


def _preview(
    request: HttpRequest, form: BroadcastForm, *, token: str, error: str | None = None
) -> HttpResponse:
    audience = form.audience_value()
    reachable, blocked = audience.reach(timezone.now())
    confirm = ConfirmForm(
        initial={
            "text": form.cleaned_data["text"],
            "audience": form.cleaned_data["audience"],
            "token": token,
        }
    )
    context = _context(
        request,
        "Предпросмотр рассылки",
        form=form,
        confirm=confirm,
        text=form.cleaned_data["text"],
        audience=audience,
        reachable=reachable,
        blocked=blocked,
        error=error,
    )
    context["limit_reached"] = context["sent_today"] >= context["per_day"]
    return render(request, "domain/broadcast_preview.html", context)


def _send(request: HttpRequest) -> HttpResponse:
    form = ConfirmForm(request.POST)
    if not form.is_valid():
        return render(
            request, "domain/broadcast_form.html", _context(request, "Новая рассылка", form=form)
        )
    now = timezone.now()
    try:
        with broadcasts.domain_db() as db:
            created = broadcasts.create(
                db,
                token=str(form.cleaned_data["token"]),
                text=form.cleaned_data["text"],
                audience=form.audience_value(),
                created_by=request.user.get_username(),
                now=now,
                local_day=timezone.localdate(now),
                per_day=_per_day(),
            )
            if created.created:
                written = broadcasts.queue(db, created.id, now=now)
    except broadcasts.BroadcastError as exc:
        return _preview(request, form, token=str(form.cleaned_data["token"]), error=str(exc))
    if created.created:
        messages.success(request, f"Рассылка поставлена в очередь: {written} сообщений.")
    else:
        messages.warning(request, "Эта рассылка уже отправлена: повторное нажатие ничего не шлёт.")
    return HttpResponseRedirect(reverse("admin:domain_member_broadcast", args=[created.id]))


def broadcast_detail(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    _require_view(request)
    broadcast = get_object_or_404(m.Broadcast.objects.select_related("tariff"), pk=broadcast_id)
    return render(
        request,
        "domain/broadcast_detail.html",
        _context(
            request,
            f"Рассылка №{broadcast.pk}",
            broadcast=broadcast,
            progress=broadcasts.progress(broadcast),
        ),
    )


def broadcast_resume(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    """POST: queue the recipients an interrupted request left without an outbox row."""
    _require_add(request)
    if request.method != "POST":
        return HttpResponseRedirect(reverse("admin:domain_member_broadcast", args=[broadcast_id]))
    get_object_or_404(m.Broadcast, pk=broadcast_id)
    with broadcasts.domain_db() as db:
        written = broadcasts.queue(db, broadcast_id, now=timezone.now())
    messages.success(request, f"Дописано в очередь: {written} сообщений.")
    return HttpResponseRedirect(reverse("admin:domain_member_broadcast", args=[broadcast_id]))
