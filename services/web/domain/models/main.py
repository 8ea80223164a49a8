"""Models of the main database: members, tariffs, payments, subscriptions, chats, outbox,
broadcasts, events and surveys (the `main` logical database)."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from services.web.domain.fields import UTCDateTimeField as Stamp


def isolated(untrusted: str) -> str:
    """`untrusted` (a name a member chose) in a Unicode first-strong isolate: a right-to-left
    override in it (U+202E) then cannot reverse the text shown after it, such as the id."""
    return f"\u2068{untrusted}\u2069"


class MainModel(models.Model):
    logical_db = "main"

    class Meta:
        abstract = True
        managed = False


# --- members and money -----------------------------------------------------------------------


class Member(MainModel):
    telegram_id = models.BigIntegerField(unique=True)
    username = models.TextField(null=True, blank=True)
    first_name = models.TextField(null=True, blank=True)
    last_name = models.TextField(null=True, blank=True)
    phone = models.TextField(null=True, blank=True)
    language_code = models.TextField(null=True, blank=True)
    role = models.TextField(
        choices=[("member", "member"), ("staff", "staff"), ("admin", "admin")], default="member"
    )
    is_reachable = models.BooleanField(default=True)
    blocked_at = Stamp(null=True, blank=True)
    created_at = Stamp()
    updated_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "users"
        verbose_name = "участник"
        verbose_name_plural = "участники"
        ordering = ("-id",)

    def __str__(self) -> str:
        name = (self.username and f"@{self.username}") or self.first_name
        if not name:
            return f"({self.telegram_id})"
        return f"{isolated(name)} ({self.telegram_id})"


# Validators of operator-edited columns state the schema's CHECK next to them (runtime/schema/
# main/0001_initial.sql), so a value the database refuses is a form error, not a 500;
# tests/integration/web/test_operator_forms.py tries the edges of each against the database.


#: The longest period a tariff may sell: ten years of leap years. payment_monitor adds a paid
#: period to the subscription's end (monitors/decisions/periods.period_after); a period of
#: millions of days overflows datetime there, so the member is charged and the payment never
#: applied. Ten years is beyond any subscription the community sells, and far inside the range.
#: The schema's tariffs_period_check is only > 0 (see the note on period_days below).
MAX_PERIOD_DAYS = 3660


class Tariff(MainModel):
    code = models.TextField("код", unique=True)
    title = models.TextField("название")
    description = models.TextField("описание", null=True, blank=True)
    # tariffs_price_check: price_minor > 0
    price_minor = models.BigIntegerField(
        "цена", help_text="в копейках", validators=[MinValueValidator(1)]
    )
    # tariffs_currency_check: length(currency) = 3 AND currency = upper(currency); ISO 4217
    # codes are Latin letters, so the form asks for exactly that.
    currency = models.TextField(
        "валюта",
        default="RUB",
        validators=[RegexValidator(r"\A[A-Z]{3}\Z", "Три заглавные латинские буквы (ISO 4217).")],
    )
    # tariffs_period_check: period_days > 0. The upper bound is the admin's alone: SQLite cannot
    # change a table's CHECK without rebuilding it, which a portable migration cannot do to a
    # table other tables reference.
    period_days = models.IntegerField(
        "срок, дней",
        validators=[MinValueValidator(1), MaxValueValidator(MAX_PERIOD_DAYS)],
        help_text=f"от 1 до {MAX_PERIOD_DAYS}",
    )
    is_active = models.BooleanField("продаётся", default=True)
    created_at = Stamp("создан", auto_now_add=True)
    updated_at = Stamp("изменён", auto_now=True)

    class Meta(MainModel.Meta):
        db_table = "tariffs"
        verbose_name = "тариф"
        verbose_name_plural = "тарифы"

    def __str__(self) -> str:
        return self.title


class PaymentMethod(MainModel):
    provider = models.TextField()
    provider_method_id = models.TextField()
    user = models.ForeignKey(Member, models.DO_NOTHING)
    method_type = models.TextField()
    title = models.TextField(null=True)
    card_last4 = models.TextField(null=True)
    is_saved = models.BooleanField()
    revoked_at = Stamp(null=True)
    revoked_reason = models.TextField(null=True)
    created_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "payment_methods"
        verbose_name = "способ оплаты"
        verbose_name_plural = "способы оплаты"

    def __str__(self) -> str:
        return self.title or f"{self.method_type} {self.card_last4 or ''}".strip()


SUBSCRIPTION_STATUSES = [(s, s) for s in ("active", "grace", "expired", "canceled")]


class Subscription(MainModel):
    user = models.ForeignKey(Member, models.DO_NOTHING)
    tariff = models.ForeignKey(Tariff, models.DO_NOTHING)
    status = models.TextField(choices=SUBSCRIPTION_STATUSES)
    current_period_start = Stamp()
    current_period_end = Stamp()
    grace_until = Stamp(null=True)
    auto_renew = models.BooleanField()
    payment_method = models.ForeignKey(PaymentMethod, models.DO_NOTHING, null=True)
    next_charge_at = Stamp(null=True)
    auto_renew_stopped_reason = models.TextField(null=True)
    canceled_at = Stamp(null=True)
    expired_at = Stamp(null=True)
    created_at = Stamp()
    updated_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "subscriptions"
        verbose_name = "подписка"
        verbose_name_plural = "подписки"
        ordering = ("-id",)


PAYMENT_STATUSES = [
    (s, s) for s in ("created", "pending", "waiting_for_capture", "succeeded", "canceled")
]


class Payment(MainModel):
    provider = models.TextField()
    provider_payment_id = models.TextField(null=True)
    idempotence_key = models.TextField(unique=True)
    user = models.ForeignKey(Member, models.DO_NOTHING)
    tariff = models.ForeignKey(Tariff, models.DO_NOTHING)
    subscription = models.ForeignKey(Subscription, models.DO_NOTHING, null=True)
    kind = models.TextField()
    amount_minor = models.BigIntegerField()
    currency = models.TextField()
    #: main/0010: the days the payment buys, fixed when it was created; NULL before (the
    #: tariff's period_days applies).
    period_days = models.IntegerField("дней", null=True)
    status = models.TextField(choices=PAYMENT_STATUSES)
    cancellation_party = models.TextField(null=True)
    cancellation_reason = models.TextField(null=True)
    description = models.TextField(null=True)
    confirmation_url = models.TextField(null=True)
    metadata = models.JSONField(null=True)
    check_attempts = models.IntegerField()
    last_error = models.TextField(null=True)
    created_at = Stamp()
    updated_at = Stamp()
    paid_at = Stamp(null=True)
    processed_at = Stamp(null=True)
    applied_period_end = Stamp(null=True)

    class Meta(MainModel.Meta):
        db_table = "payments"
        verbose_name = "платёж"
        verbose_name_plural = "платежи"
        ordering = ("-created_at",)


class Refund(MainModel):
    """Money YooKassa returned (payment_monitor records it once the refund is fetched)."""

    provider = models.TextField()
    provider_refund_id = models.TextField("id у провайдера")
    payment = models.ForeignKey(
        Payment, models.DO_NOTHING, related_name="refunds", verbose_name="платёж"
    )
    amount_minor = models.BigIntegerField("сумма", help_text="в копейках")
    currency = models.TextField("валюта")
    kind = models.TextField("возврат", choices=[("full", "полный"), ("partial", "частичный")])
    effect = models.TextField(
        "последствие",
        choices=[("access_ended", "оплаченный период отменён"), ("none", "доступ не менялся")],
    )
    subscription = models.ForeignKey(
        Subscription, models.DO_NOTHING, null=True, verbose_name="завершённая подписка"
    )
    description = models.TextField("описание", null=True)
    refunded_at = Stamp("возвращено у провайдера", null=True)
    created_at = Stamp("записан")

    class Meta(MainModel.Meta):
        db_table = "refunds"
        verbose_name = "возврат"
        verbose_name_plural = "возвраты"
        ordering = ("-created_at",)


class ChargeAttempt(MainModel):
    subscription = models.ForeignKey(Subscription, models.DO_NOTHING)
    period_end = Stamp()
    attempt_no = models.IntegerField()
    idempotence_key = models.TextField(unique=True)
    payment = models.ForeignKey(Payment, models.DO_NOTHING, null=True)
    amount_minor = models.BigIntegerField()
    currency = models.TextField()
    status = models.TextField()
    decline_reason = models.TextField(null=True)
    decline_kind = models.TextField(null=True)
    next_retry_at = Stamp(null=True)
    last_error = models.TextField(null=True)
    created_at = Stamp()
    finished_at = Stamp(null=True)

    class Meta(MainModel.Meta):
        db_table = "charge_attempts"
        verbose_name = "попытка списания"
        verbose_name_plural = "попытки списания"
        ordering = ("-id",)


class ProviderEvent(MainModel):
    provider = models.TextField()
    event_key = models.TextField()
    event_type = models.TextField()
    object_id = models.TextField()
    payload = models.JSONField()
    source_ip = models.TextField(null=True)
    received_at = Stamp()
    attempts = models.IntegerField()
    last_error = models.TextField(null=True)
    processed_at = Stamp(null=True)
    outcome = models.TextField(null=True)

    class Meta(MainModel.Meta):
        db_table = "provider_events"
        verbose_name = "событие YooKassa"
        verbose_name_plural = "события YooKassa"
        ordering = ("-id",)


# --- chats, notifications, moderation --------------------------------------------------------


class Chat(MainModel):
    telegram_chat_id = models.BigIntegerField(unique=True)
    title = models.TextField(null=True)
    username = models.TextField(null=True)
    kind = models.TextField()
    is_managed = models.BooleanField("платный чат")
    created_at = Stamp()
    updated_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "chats"
        verbose_name = "чат"
        verbose_name_plural = "чаты"

    def __str__(self) -> str:
        return self.title or str(self.telegram_chat_id)


class Membership(MainModel):
    user = models.ForeignKey(Member, models.DO_NOTHING)
    chat = models.ForeignKey(Chat, models.DO_NOTHING)
    status = models.TextField()
    joined_at = Stamp(null=True)
    left_at = Stamp(null=True)
    banned_at = Stamp(null=True)
    unbanned_at = Stamp(null=True)
    updated_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "memberships"
        verbose_name = "членство в чате"
        verbose_name_plural = "членство в чатах"


OUTBOX_STATUSES = [(s, s) for s in ("queued", "sending", "sent", "failed", "dead")]


class OutboxMessage(MainModel):
    dedupe_key = models.TextField(unique=True)
    chat_id = models.BigIntegerField()
    user = models.ForeignKey(Member, models.DO_NOTHING, null=True)
    kind = models.TextField()
    text = models.TextField()
    priority = models.IntegerField()
    status = models.TextField(choices=OUTBOX_STATUSES)
    attempts = models.IntegerField()
    next_attempt_at = Stamp()
    last_error = models.TextField(null=True)
    last_error_code = models.IntegerField(null=True)
    parts_sent = models.IntegerField()
    sent_at = Stamp(null=True)
    created_at = Stamp()
    updated_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "outbox"
        verbose_name = "уведомление"
        verbose_name_plural = "очередь уведомлений"
        ordering = ("-id",)


class ModerationAction(MainModel):
    idempotence_key = models.TextField(unique=True)
    user = models.ForeignKey(Member, models.DO_NOTHING)
    chat = models.ForeignKey(Chat, models.DO_NOTHING)
    subscription = models.ForeignKey(Subscription, models.DO_NOTHING, null=True)
    action = models.TextField(choices=[("ban", "ban"), ("unban", "unban")])
    reason = models.TextField()
    status = models.TextField()
    attempts = models.IntegerField()
    last_error = models.TextField(null=True)
    telegram_result = models.JSONField(null=True)
    requested_at = Stamp()
    done_at = Stamp(null=True)

    class Meta(MainModel.Meta):
        db_table = "moderation_actions"
        verbose_name = "бан / разбан"
        verbose_name_plural = "баны и разбаны"
        ordering = ("-requested_at",)


class SubscriptionReminder(MainModel):
    """What tsmonitor and recurrent_payments told a member about a subscription, once each."""

    subscription = models.ForeignKey(Subscription, models.DO_NOTHING)
    period_end = Stamp()
    kind = models.TextField()
    outbox_dedupe_key = models.TextField(null=True)
    sent_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "subscription_reminders"
        verbose_name = "уведомление о подписке"
        verbose_name_plural = "уведомления о подписке"


class Broadcast(MainModel):
    """A staff message to the active members (services.web.domain.broadcasts); the admin pages
    are the member admin's, and its permissions (add, view) are what they check."""

    idempotence_key = models.TextField(unique=True)
    text = models.TextField()
    audience = models.TextField(choices=[("active", "active"), ("tariff", "tariff")])
    tariff = models.ForeignKey(Tariff, models.DO_NOTHING, null=True)
    local_day = models.TextField()
    day_slot = models.IntegerField()
    recipients_count = models.IntegerField()
    status = models.TextField(choices=[("queuing", "queuing"), ("queued", "queued")])
    created_by = models.TextField()
    created_at = Stamp()
    queued_at = Stamp(null=True)

    class Meta(MainModel.Meta):
        db_table = "broadcasts"
        verbose_name = "рассылка"
        verbose_name_plural = "рассылки"
        ordering = ("-id",)


class BroadcastRecipient(MainModel):
    broadcast = models.ForeignKey(Broadcast, models.DO_NOTHING, related_name="recipients")
    user = models.ForeignKey(Member, models.DO_NOTHING)
    chat_id = models.BigIntegerField()
    outbox_dedupe_key = models.TextField(unique=True)

    class Meta(MainModel.Meta):
        db_table = "broadcast_recipients"
        verbose_name = "получатель рассылки"
        verbose_name_plural = "получатели рассылок"


class MonitorHeartbeat(MainModel):
    monitor = models.TextField(unique=True)
    instance = models.TextField(null=True)
    last_tick_at = Stamp(null=True)
    last_success_at = Stamp(null=True)
    last_outcome = models.TextField(null=True)
    last_error = models.TextField(null=True)
    items_processed_total = models.BigIntegerField()
    updated_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "monitor_heartbeats"
        verbose_name = "монитор"
        verbose_name_plural = "мониторы"


# --- events and surveys ----------------------------------------------------------------------


class Event(MainModel):
    title = models.TextField("название")
    description = models.TextField("описание", null=True, blank=True)
    location = models.TextField("место", null=True, blank=True)
    url = models.TextField("ссылка", null=True, blank=True)
    starts_at = Stamp("начало")
    ends_at = Stamp("конец", null=True, blank=True)
    # events_capacity_check: capacity IS NULL OR capacity > 0
    capacity = models.IntegerField("мест", null=True, blank=True, validators=[MinValueValidator(1)])
    status = models.TextField(
        "статус",
        choices=[("draft", "draft"), ("published", "published"), ("canceled", "canceled")],
        default="published",
    )
    announced_at = Stamp("объявлено", null=True, blank=True, editable=False)
    created_at = Stamp("создано", auto_now_add=True)
    updated_at = Stamp("изменено", auto_now=True)

    class Meta(MainModel.Meta):
        db_table = "events"
        verbose_name = "мероприятие"
        verbose_name_plural = "мероприятия"
        ordering = ("-starts_at",)

    def __str__(self) -> str:
        return self.title


class EventRegistration(MainModel):
    event = models.ForeignKey(Event, models.DO_NOTHING)
    user = models.ForeignKey(Member, models.DO_NOTHING)
    status = models.TextField()
    registered_at = Stamp()
    canceled_at = Stamp(null=True)

    class Meta(MainModel.Meta):
        db_table = "event_registrations"
        verbose_name = "регистрация"
        verbose_name_plural = "регистрации на мероприятия"


class Survey(MainModel):
    user = models.ForeignKey(Member, models.DO_NOTHING)
    month = models.TextField()
    status = models.TextField()
    sent_at = Stamp()
    reminded_at = Stamp(null=True)
    answered_at = Stamp(null=True)

    class Meta(MainModel.Meta):
        db_table = "surveys"
        verbose_name = "анкета"
        verbose_name_plural = "анкеты"
        ordering = ("-month", "-id")

    def __str__(self) -> str:
        return f"{self.month} #{self.pk}"


class SurveyResponse(MainModel):
    survey = models.ForeignKey(Survey, models.DO_NOTHING, related_name="responses")
    question_key = models.TextField()
    answer = models.TextField()
    answered_at = Stamp()

    class Meta(MainModel.Meta):
        db_table = "survey_responses"
        verbose_name = "ответ анкеты"
        verbose_name_plural = "ответы анкет"
