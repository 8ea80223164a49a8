"""Everything a member reads: the bot's answers and what the monitors send (receipts, reminders,
notices), in one place so a wording changes once. Dates are shown in the community's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from runtime.db import Row

COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "регистрация"),
    ("subscribe", "оформить или продлить подписку"),
    ("status", "статус подписки"),
    ("cancel_autorenew", "отключить автопродление"),
    ("autorenew_on", "включить автопродление"),
    ("events", "мероприятия сообщества"),
    ("survey", "ежемесячная анкета"),
    ("help", "что умеет бот"),
)

HELP = "Я бот сообщества агентов недвижимости. Команды:\n" + "\n".join(
    f"/{name} — {about}" for name, about in COMMANDS
)
UNKNOWN = "Не понял сообщение. " + HELP
UNKNOWN_BUTTON = "Эта кнопка устарела. Отправьте /help."
WELCOME_NEW = "Добро пожаловать! Вы зарегистрированы.\n\n" + HELP
WELCOME_BACK = "С возвращением! Вы уже зарегистрированы.\n\n" + HELP
NO_TARIFFS = "Оформить подписку сейчас нельзя: тарифы ещё не настроены. Попробуйте позже."
PAYMENTS_OFF = "Оплата временно недоступна. Попробуйте позже."
PROVIDER_DOWN = "Платёжный сервис не ответил. Повторите /subscribe через минуту."
PROVIDER_REJECTED = "Платёжный сервис отклонил запрос. Повторите /subscribe позже."
AUTO_RENEWAL_IN_PROGRESS = (
    "Сейчас идёт автоматическое продление подписки с сохранённой карты. "
    "Дождитесь его результата — мы пришлём сообщение."
)
CHOOSE_TARIFF = "Выберите тариф:"
NO_SUBSCRIPTION = "У вас нет подписки. Оформить: /subscribe"
NOTHING_TO_CANCEL = "Автопродление уже выключено или подписки нет."
AUTORENEW_STOPPED = (
    "Автопродление отключено. Подписка действует до конца оплаченного периода; "
    "продлить можно командой /subscribe (разовая оплата, карта не сохраняется). "
    "Включить автопродление снова: /autorenew_on."
)
#: Added to the /cancel_autorenew reply while a charge of the saved card started earlier is open.
CHARGE_STILL_CHECKED = (
    "Списание за продление, начатое раньше, ещё проверяется: если оно прошло, оплаченный "
    "период добавится к подписке, и мы пришлём сообщение."
)
AUTORENEW_ALREADY_ON = "Автопродление уже включено. Отключить: /cancel_autorenew."
AUTORENEW_NEXT_PAYMENT = (
    "Сохранённой карты для автопродления нет. Оплатите подписку командой /subscribe: карта "
    "сохранится, и автопродление включится (в сообщении с оплатой будет сказано, сколько и как "
    "часто списывается)."
)
NO_EVENTS = "Ближайших мероприятий нет."
EVENTS_FOR_MEMBERS = "Регистрация на мероприятия — для участников с подпиской. /subscribe"
SURVEY_FOR_MEMBERS = "Анкета — для участников с подпиской."
SURVEY_DONE = "Спасибо! Анкета за этот месяц заполнена."
SURVEY_ALREADY_DONE = "Анкета за этот месяц уже заполнена. Спасибо!"
SURVEY_STALE = "Этот вопрос уже не актуален."
SURVEY_EMPTY_ANSWER = "Ответ пустой. Напишите, пожалуйста, ответ текстом одним сообщением."
JOIN_APPROVED = "Заявка одобрена — добро пожаловать в чат сообщества!"
JOIN_DECLINED = (
    "Вход в чат сообщества — только для участников с активной подпиской. "
    "Оформите её командой /subscribe и отправьте заявку снова."
)
VOICE_SAVED = "Голосовое сообщение сохранено."
VOICE_MEMBERS_ONLY = "Голосовые сообщения сохраняем только для участников с подпиской: /subscribe"

REGISTRATION_REPLIES = {
    "registered": "Вы зарегистрированы на «{title}».",
    "already": "Вы уже зарегистрированы на «{title}».",
    "full": "Мест на «{title}» больше нет.",
    "closed": "Регистрация на это мероприятие закрыта.",
    "canceled": "Регистрация отменена.",
    "not_registered": "Вы не были зарегистрированы.",
    "too_late": "Отменить регистрацию уже нельзя: мероприятие началось или снято.",
}


def local_date(value: datetime, tz: ZoneInfo) -> str:
    return f"{value.astimezone(tz):%d.%m.%Y}"


def local_datetime(value: datetime, tz: ZoneInfo) -> str:
    return f"{value.astimezone(tz):%d.%m.%Y %H:%M}"


def rubles(minor: int, currency: str) -> str:
    amount = f"{minor // 100}" if minor % 100 == 0 else f"{minor // 100}.{minor % 100:02d}"
    return f"{amount} ₽" if currency == "RUB" else f"{amount} {currency}"


def subscription_status(sub: Row | None, tz: ZoneInfo) -> str:
    if sub is None:
        return NO_SUBSCRIPTION
    title = sub["tariff_title"]
    if sub["status"] == "active":
        renew = "включено" if sub["auto_renew"] else "выключено"
        return (
            f"Подписка «{title}» активна до {local_date(sub['current_period_end'], tz)}.\n"
            f"Автопродление: {renew}."
        )
    if sub["status"] == "grace":
        return (
            f"Подписка «{title}» закончилась {local_date(sub['current_period_end'], tz)}; "
            f"доступ сохраняется до {local_date(sub['grace_until'], tz)}. Продлить: /subscribe"
        )
    return f"Подписка «{title}» не активна. Оформить снова: /subscribe"


def payment_link(url: str, tariff: Row, reused: bool, saves_card: bool) -> str:
    """The payment link, saying whether the card is saved and charged every period (the
    member's informed consent to auto-renewal) or the payment is a one-time one."""
    price = rubles(tariff["price_minor"], tariff["currency"])
    days = tariff["period_days"]
    head = "Ваша ссылка на оплату ещё действует" if reused else "Ссылка на оплату готова"
    if saves_card:
        terms = (
            f"Карта сохранится для автопродления: каждые {days} дн. с неё будет автоматически "
            f"списываться {price}. Отключить автопродление можно в любой момент: /cancel_autorenew."
        )
    else:
        terms = (
            "Это разовая оплата: карта не сохранится, автопродление останется выключенным. "
            "Включить его: /autorenew_on."
        )
    return (
        f"{head}: «{tariff['title']}», {price} за {days} дн.\n{url}\n"
        f"После оплаты подписка включится автоматически. {terms}"
    )


def autorenew_on(sub: Row, tz: ZoneInfo, now: datetime) -> str:
    """/autorenew_on switched auto-renewal on: what is charged, how often, from which card."""
    price = rubles(sub["price_minor"], sub["currency"])
    card = f" •••• {sub['card_last4']}" if sub["card_last4"] else ""
    end = sub["current_period_end"]
    when = (
        f"перед окончанием оплаченного периода ({local_date(end, tz)})"
        if end > now
        else "в ближайшее время"
    )
    return (
        f"Автопродление включено: каждые {sub['period_days']} дн. с сохранённой карты{card} "
        f"будет автоматически списываться {price}; ближайшее списание — {when}. "
        "Отключить: /cancel_autorenew."
    )


def event_line(event: Row, tz: ZoneInfo) -> str:
    parts = [f"• {event['title']} — {local_datetime(event['starts_at'], tz)}"]
    if event["location"]:
        parts.append(f"  {event['location']}")
    if event["capacity"] is not None:
        parts.append(f"  Мест: {max(event['capacity'] - event['registered_count'], 0)}")
    if event["my_status"] == "registered":
        parts.append("  Вы зарегистрированы")
    return "\n".join(parts)


# --- what the monitors send ---------------------------------------------------------------

SURVEY_BUTTON = "Заполнить"
SURVEY_INVITE = "Ежемесячная анкета сообщества: расскажите о своих сделках за месяц."
SURVEY_REMINDER = "Напоминаем про анкету этого месяца: это займёт пару минут."
PAYMENT_FAILED = "Оплата не прошла. Попробуйте ещё раз командой /subscribe."
AUTO_RENEW_FAILED = (
    "Не удалось списать оплату за продление подписки, автопродление "
    "отключено. Оплатите подписку вручную командой /subscribe."
)
SUBSCRIPTION_EXPIRED = "Подписка истекла, доступ к чатам сообщества закрыт. Вернуться: /subscribe"
DEFAULT_CHAT_TITLE = "чат сообщества"


#: The monthly invite's button: the bot opens (or resumes) the member's waiting survey.
SURVEY_OPEN_CALLBACK = "survey:open"


def survey_keyboard() -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": SURVEY_BUTTON, "callback_data": SURVEY_OPEN_CALLBACK}]]}


def payment_description(tariff_title: str, period_days: int) -> str:
    """What YooKassa shows the payer for a subscription bought by hand (API or bot)."""
    return f"Подписка «{tariff_title}» на {period_days} дн."


def renewal_description(period_end: datetime, tz: ZoneInfo) -> str:
    """What YooKassa shows for a charge of the saved card."""
    return f"Продление подписки до {local_date(period_end, tz)}"


def refunded(minor: int, currency: str) -> str:
    """A full refund of the period the member had: it ends, as an expiry does."""
    return (
        f"Оплата подписки ({rubles(minor, currency)}) возвращена, подписка завершена и доступ"
        " к чатам сообщества закрыт. Вернуться: /subscribe"
    )


def refunded_renewal(minor: int, currency: str, access_until: datetime, tz: ZoneInfo) -> str:
    """A full refund of a renewal whose period had not begun: the period paid before stands."""
    return (
        f"Оплата продления ({rubles(minor, currency)}) возвращена, продление отменено и"
        f" автопродление отключено. Подписка действует до {local_date(access_until, tz)}."
        " Продлить: /subscribe"
    )


def refunded_days(minor: int, currency: str, access_until: datetime, tz: ZoneInfo) -> str:
    """A full refund of a payment a later one had extended: its days are taken back."""
    return (
        f"Оплата подписки ({rubles(minor, currency)}) возвращена, оплаченный ею срок снят и"
        f" автопродление отключено. Подписка действует до {local_date(access_until, tz)}."
        " Продлить: /subscribe"
    )


def renewed(period_end: datetime, tz: ZoneInfo) -> str:
    return f"Подписка продлена до {local_date(period_end, tz)}. Спасибо, что вы с нами!"


def receipt(
    period_end: datetime,
    tz: ZoneInfo,
    links: list[tuple[str, str]],
    skipped: Sequence[str] = (),
) -> str:
    """The receipt of a payment, with an invite link per paid chat (title, link), and a line
    for each chat whose link could not be made."""
    lines = [f"Оплата получена. Подписка активна до {local_date(period_end, tz)}."]
    lines += way_in(links)
    lines += [
        f"Ссылку в «{title}» сейчас создать не удалось: администратор уже знает и пришлёт её."
        for title in skipped
    ]
    return "\n".join(lines)


def way_in(links: list[tuple[str, str]]) -> list[str]:
    """Lines giving a join-request link per paid chat (title, link), and what to do with it."""
    lines = [f"Вход в «{title}»: {link}" for title, link in links]
    if links:
        lines.append("По ссылке отправьте заявку на вступление: бот одобрит её сразу.")
    return lines


def way_in_failed(title: str) -> str:
    return f"Ссылку в «{title}» сейчас создать не удалось: попробуйте /status позже."


def term_reminder(period_end: datetime, auto_renew: bool, now: datetime) -> str:
    """A T-n reminder sent at `now` (both in the community's zone). The days left are those
    between the two dates, not the reminder's n: a T-3 sent a day late (after downtime, an
    upgrade) says «через 2 дн.», a T-1 sent on the last day «сегодня»."""
    days = max(0, (period_end.date() - now.date()).days)
    when = "сегодня" if days == 0 else f"через {days} дн."
    end = f"{period_end:%d.%m.%Y %H:%M}"
    if auto_renew:
        return (
            f"Подписка продлится автоматически {when} ({end}): спишем оплату с сохранённой карты."
        )
    return f"Подписка заканчивается {when} ({end}). Продлить: /subscribe"


def grace_started(grace_until: datetime, tz: ZoneInfo) -> str:
    return (
        "Подписка закончилась. Доступ сохраняется до "
        f"{local_datetime(grace_until, tz)}: продлите её командой /subscribe."
    )


def event_notice(
    event: dict[str, Any], kind: str, tz: ZoneInfo, now: datetime | None = None
) -> str:
    """An event's announcement, cancellation or reminder (kind 24h or 1h) sent at `now`.

    A reminder says when the event is as seen at `now` in the community's time zone, not as
    its kind assumes: a 24 h reminder sent late (after downtime, an upgrade) to an event later
    the same day says «сегодня», not «завтра»; a 1 h reminder sent 20 minutes before the start
    says «через 20 мин.». Reminders need `now`.
    """
    when = local_datetime(event["starts_at"], tz)
    where = f", {event['location']}" if event.get("location") else ""
    if kind == "announcement":
        head = f"Новое мероприятие: {event['title']} — {when}{where}. Записаться: /events"
    elif kind == "canceled":
        head = f"Мероприятие «{event['title']}» ({when}) отменено."
    else:
        if now is None:
            raise TypeError("event_notice: a reminder needs the time it is sent (now)")
        soon = event_soon(event["starts_at"], now, tz, within_hour=kind == "1h")
        head = f"Напоминаем: «{event['title']}» {soon}{when}{where}."
    return head + (f"\n{event['url']}" if event.get("url") else "")


def event_soon(starts_at: datetime, now: datetime, tz: ZoneInfo, *, within_hour: bool) -> str:
    """How soon an event starting at `starts_at` is, seen at `now`, as the words before its
    date and time: «через час, », «через 20 мин., », «сегодня, », «завтра, » or «— » (a later
    date, or one already past: the date alone)."""
    left_s = (starts_at - now).total_seconds()
    if within_hour and 0 < left_s <= 3600:
        minutes = max(1, -(-int(left_s) // 60))  # rounded up: never "in 0 minutes"
        return "через час, " if minutes >= 55 else f"через {minutes} мин., "
    days = (starts_at.astimezone(tz).date() - now.astimezone(tz).date()).days
    if left_s > 0 and days == 0:
        return "сегодня, "
    if left_s > 0 and days == 1:
        return "завтра, "
    return "— "


# A payer's join request the bot could not approve at once (ban_monitor retries it).
JOIN_DELAYED = (
    "Заявка получена. Бот не смог одобрить её сразу — одобрит, как только сможет, и сообщит вам."
)
JOIN_REQUEST_LOST = (
    "Не удалось одобрить вашу заявку на вход в чат сообщества: её больше нет. "
    "Отправьте заявку снова по ссылке из чека."
)
