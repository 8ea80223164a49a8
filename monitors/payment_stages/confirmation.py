"""payment_monitor, stage 3: a succeeded, applied payment's way in and its receipt.

The member's pending unbans run first; then every managed chat the member is not in gets a
fresh invite link (INVITE_LINK_TTL_H), reused after a crash; then one receipt goes to the outbox
and the payment is marked confirmed.

The link makes a join request, which the bot approves only for a member with a live
subscription (services/bot/handlers/chats.py): a receipt forwarded to someone who never paid
lets them in neither before the payer has used it nor after. A link limited to one member
admits whoever follows it first.

A chat whose link cannot be made never holds the receipt back: when Telegram refuses for good
(the bot removed or demoted, the chat gone or upgraded) or still fails RECEIPT_WAIT after the
payment was applied, the receipt goes without that chat's link, says so, and the skip is counted
(`domos_invite_links_created_total{outcome="skipped"}`, alert DomosInviteLinksSkipped).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from monitors import metrics, texts
from monitors.decisions.telegram import Verdict, classify_telegram_response
from monitors.outbox import enqueue
from monitors.paid_chats import paid_chats_not_joined
from monitors.payment_stages.work import NOT_A_CHARGE, PaymentWork
from runtime.errors import MonitorError

#: How long a chat's transient invite failures may hold the receipt back.
RECEIPT_WAIT = timedelta(hours=1)
#: Telegram's answers that no retry changes for this chat.
_PERMANENT = {Verdict.DEAD_LETTER, Verdict.RECIPIENT_BLOCKED, Verdict.CHAT_MIGRATED}


async def confirm_applied(work: PaymentWork) -> int:
    payments = await work.claim(
        "payments",
        "status = 'succeeded' AND processed_at IS NOT NULL AND confirmed_at IS NULL"
        f" AND {NOT_A_CHARGE}",
        (),
    )
    confirmed = 0
    for payment in payments:
        if work.ctx.stop_requested:
            await work.release_payment(payment)
            continue
        if await _confirm_one(work, payment):
            confirmed += 1
    return confirmed


async def _confirm_one(work: PaymentWork, payment: dict[str, Any]) -> bool:
    user = await work.db.fetchone(
        "SELECT id, telegram_id FROM users WHERE id = ?", (payment["user_id"],)
    )
    assert user is not None, "payments references its user"
    # Unbans recorded with the payment go first, or the invite would not admit the member.
    await work.moderation.run_due(user_id=user["id"])
    # A member already in a chat (a renewal paid by hand, usually) needs no way in.
    chats = await paid_chats_not_joined(work.db, user["id"])
    links: list[tuple[str, str]] = []
    skipped: list[str] = []
    waited_out = work.ctx.clock.now() - payment["processed_at"] >= RECEIPT_WAIT
    for chat in chats:
        title = chat["title"] or texts.DEFAULT_CHAT_TITLE
        link, verdict = await _invite_link(work, payment, user, chat)
        if link is not None:
            links.append((title, link))
        elif verdict in _PERMANENT or waited_out:
            skipped.append(title)
            metrics.INVITE_LINKS.labels(outcome="skipped").inc()
            work.log.error(
                "invite_link_skipped",
                payment_id=payment["id"],
                chat_id=chat["telegram_chat_id"],
                verdict=verdict.value if verdict else None,
            )
        else:
            await work.release_payment(payment)
            return False
    tz = work.ctx.settings.timezone
    receipt = texts.receipt(payment["applied_period_end"], tz, links, skipped)
    now = work.ctx.clock.now()
    async with work.db.transaction() as tx:
        await enqueue(
            tx,
            dedupe_key=f"payment_confirmed:{payment['id']}",
            chat_id=user["telegram_id"],
            user_id=user["id"],
            kind="receipt",
            text=receipt,
            priority=10,
            reply_markup=None,
        )
        await tx.execute(
            "UPDATE payments SET confirmed_at = ?, lease_owner = NULL, lease_expires_at = NULL"
            " WHERE id = ? AND lease_owner = ?",
            (now, payment["id"], work.ctx.owner),
        )
    metrics.CONFIRMATIONS.inc()
    work.log.info("payment_confirmed", payment_id=payment["id"], chats=len(links))
    return True


async def _invite_link(
    work: PaymentWork, payment: dict[str, Any], user: dict[str, Any], chat: dict[str, Any]
) -> tuple[str | None, Verdict | None]:
    """The payment's link to `chat` (the one created before a crash, else a new one), or None
    with Telegram's verdict."""
    existing = await work.db.fetchval(
        "SELECT link FROM invite_links WHERE payment_id = ? AND chat_id = ? AND revoked_at IS NULL",
        (payment["id"], chat["id"]),
    )
    if existing:
        return str(existing), None
    now = work.ctx.clock.now()
    expire_at = now + work.config.invite_ttl
    name = f"payment {payment['id']}"[:32]
    status, body = await work.telegram.call(
        "createChatInviteLink",
        {
            "chat_id": chat["telegram_chat_id"],
            "name": name,
            "creates_join_request": True,
            "expire_date": int(expire_at.timestamp()),
        },
    )
    outcome = classify_telegram_response(status, body)
    if outcome.verdict is not Verdict.DELIVERED or not isinstance((body or {}).get("result"), dict):
        metrics.INVITE_LINKS.labels(outcome="failed").inc()
        work.log.warning(
            "invite_link_failed", chat_id=chat["telegram_chat_id"], error=outcome.description
        )
        if outcome.verdict is Verdict.BOT_FAULT:
            raise MonitorError(f"Bot API refuses the bot: {outcome.description}")
        return None, outcome.verdict
    link = str((body or {})["result"]["invite_link"])
    await work.db.execute(
        "INSERT INTO invite_links (chat_id, user_id, payment_id, link, name,"
        " creates_join_request, expire_at) VALUES (?, ?, ?, ?, ?, TRUE, ?)",
        (chat["id"], user["id"], payment["id"], link, name, expire_at),
    )
    metrics.INVITE_LINKS.labels(outcome="created").inc()
    return link, Verdict.DELIVERED
