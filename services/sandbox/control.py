"""The control API (`/_sandbox/...`): what tests and the demo use to play users, banks and time.

JSON in, JSON out. Errors are `{"error": "..."}` with 400 (bad input) or 404 (unknown object);
YooKassa-side refusals keep YooKassa's error object. See docs/sandbox.md for the reference.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from runtime.errors import DomosError
from services.sandbox.clock import Clock
from services.sandbox.config import FloodLimits, SandboxConfig
from services.sandbox.faults import FAULT_APIS, Faults
from services.sandbox.telegram import updates as users
from services.sandbox.telegram.errors import TelegramApiError
from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import MEMBER_STATUSES, BotState, Chat, User
from services.sandbox.webhooks import WebhookSender
from services.sandbox.yookassa.errors import YooKassaApiError
from services.sandbox.yookassa.service import YooKassaService

CHAT_TYPES = ("private", "group", "supergroup", "channel")
MAX_SYNTHETIC_FILE = 64 * 1024 * 1024


class ControlError(DomosError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Keys:
    config: web.AppKey[SandboxConfig]
    clock: web.AppKey[Clock]
    faults: web.AppKey[Faults]
    sender: web.AppKey[WebhookSender]
    telegram: web.AppKey[TelegramService]
    yookassa: web.AppKey[YooKassaService]


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[Any]]


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
    )


def _wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                parsed = await request.json()
            except ValueError:
                return _ok({"error": "body must be JSON"}, 400)
            if not isinstance(parsed, dict):
                return _ok({"error": "body must be a JSON object"}, 400)
            body = parsed
        try:
            result = await handler(request, body)
        except ControlError as exc:
            return _ok({"error": str(exc)}, exc.status)
        except users.UserActionRefused as exc:
            return _ok({"error": str(exc)}, 400)
        except TelegramApiError as exc:
            return _ok({"error": exc.description}, exc.code)
        except YooKassaApiError as exc:
            return _ok({"error": exc.description, **exc.body("control")}, exc.status)
        if isinstance(result, web.StreamResponse):
            return result
        return _ok(result)

    return handle


def _int(data: dict[str, Any] | Any, name: str, default: int | None = None) -> int:
    value = data.get(name, default)
    if value is None:
        raise ControlError(f"{name} is required")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ControlError(f"{name} must be an integer") from None


def _opt_int(data: Any, name: str) -> int | None:
    return None if data.get(name) is None else _int(data, name)


def _str(data: dict[str, Any], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name} is required (a string)")
    return value


def add_routes(app: web.Application, keys: Keys) -> None:
    def tg(request: web.Request) -> TelegramService:
        return request.app[keys.telegram]

    def yk(request: web.Request) -> YooKassaService:
        return request.app[keys.yookassa]

    def bot_for(request: web.Request, data: dict[str, Any]) -> BotState:
        svc = tg(request)
        bot_id = data.get("bot_id", request.query.get("bot_id"))
        if bot_id is None:
            return svc.default_bot()
        for bot in svc.world.bots.values():
            if str(bot.id) == str(bot_id):
                return bot
        raise ControlError(f"no bot with id {bot_id}", 404)

    def user_for(request: web.Request, data: dict[str, Any]) -> User:
        return tg(request).world.ensure_user(
            _int(data, "user_id"),
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            username=data.get("username"),
            language_code=data.get("language_code"),
        )

    def chat_for(request: web.Request, chat_id: int) -> Chat:
        chat = tg(request).world.chats.get(chat_id)
        if chat is None:
            raise ControlError(f"chat {chat_id} not found", 404)
        return chat

    # general ------------------------------------------------------------------------------------

    async def health(request: web.Request, data: dict[str, Any]) -> Any:
        return {"ok": True}

    async def reset(request: web.Request, data: dict[str, Any]) -> Any:
        await request.app[keys.sender].cancel_pending()
        request.app[keys.sender].reset_log()
        tg(request).reset()
        tg(request).flood.configure(FloodLimits(**request.app[keys.config].limits.to_dict()))  # type: ignore[arg-type]
        yk(request).reset()
        request.app[keys.faults].reset()
        request.app[keys.clock].reset()
        return {"ok": True}

    async def get_clock(request: web.Request, data: dict[str, Any]) -> Any:
        clock = request.app[keys.clock]
        return {"now": clock.now(), "iso": clock.iso_now(), "frozen": clock.frozen}

    async def set_clock(request: web.Request, data: dict[str, Any]) -> Any:
        clock = request.app[keys.clock]
        if data.get("freeze") is True:
            clock.freeze()
        elif data.get("freeze") is False:
            clock.unfreeze()
        if "set" in data:
            clock.set(float(data["set"]))
        if "advance_s" in data:
            clock.advance(float(data["advance_s"]))
        return await get_clock(request, data)

    async def get_faults(request: web.Request, data: dict[str, Any]) -> Any:
        return request.app[keys.faults].snapshot()

    async def set_faults(request: web.Request, data: dict[str, Any]) -> Any:
        api = _str(data, "api", "yookassa")
        mode = str(data.get("mode", "500"))
        if api not in FAULT_APIS:
            raise ControlError(f"api must be one of {', '.join(FAULT_APIS)}")
        if mode not in ("500", "timeout"):
            raise ControlError("mode must be 500 or timeout")
        delay = float(data.get("delay_s", request.app[keys.config].fault_timeout_s))
        request.app[keys.faults].arm(api, mode, _int(data, "count", 1), delay)  # type: ignore[arg-type]
        return request.app[keys.faults].snapshot()

    async def deliveries(request: web.Request, data: dict[str, Any]) -> Any:
        api = request.query.get("api")
        return [d.to_dict() for d in request.app[keys.sender].list(api)]

    # telegram: people and chats -------------------------------------------------------------

    async def bots(request: web.Request, data: dict[str, Any]) -> Any:
        return [
            {
                "id": bot.id,
                "username": bot.user.username,
                "webhook_url": bot.webhook.url if bot.webhook else None,
                "pending_update_count": len(bot.updates),
                "allowed_updates": sorted(bot.allowed_updates),
                "blocked_by": sorted(bot.blocked_by),
                "commands": bot.commands,
            }
            for bot in tg(request).world.bots.values()
        ]

    async def create_user(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        tg(request).world.ensure_private_chat(user)
        return user.to_api()

    async def block(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, {**data, "user_id": request.match_info["user_id"]})
        return users.set_blocked(tg(request).world, bot_for(request, data), user, True)

    async def unblock(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, {**data, "user_id": request.match_info["user_id"]})
        return users.set_blocked(tg(request).world, bot_for(request, data), user, False)

    async def deactivate(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, {**data, "user_id": request.match_info["user_id"]})
        tg(request).deactivated.add(user.id)
        return {"ok": True}

    async def create_chat(request: web.Request, data: dict[str, Any]) -> Any:
        chat_type = _str(data, "type", "supergroup")
        if chat_type not in CHAT_TYPES:
            raise ControlError(f"type must be one of {', '.join(CHAT_TYPES)}")
        chat_id = _int(data, "id")
        if (chat_type == "private") != (chat_id > 0):
            raise ControlError("private chats have positive ids, groups and channels negative")
        chat = Chat(
            id=chat_id, type=chat_type, title=data.get("title"), username=data.get("username")
        )
        if chat_type != "private" and not chat.title:
            chat.title = f"Chat {chat_id}"
        tg(request).world.add_chat(chat)
        return chat.to_api()

    async def members(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat = chat_for(request, int(request.match_info["chat_id"]))
        return [
            {
                "user_id": user_id,
                "status": world.member(chat.id, user_id).status,
                "until_date": world.member(chat.id, user_id).until_date,
            }
            for user_id in list(world.members.get(chat.id, {}))
        ]

    async def set_member(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat = chat_for(request, int(request.match_info["chat_id"]))
        user = user_for(request, data)
        status = _str(data, "status", "member")
        if status not in MEMBER_STATUSES:
            raise ControlError(f"status must be one of {', '.join(MEMBER_STATUSES)}")
        world.set_member(chat.id, user.id, status, _int(data, "until_date", 0))
        return world.chat_member_api(chat.id, user.id)

    async def bans(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat_filter = _opt_int(request.query, "chat_id")
        result = []
        for chat_id, chat_members in world.members.items():
            if chat_filter is not None and chat_id != chat_filter:
                continue
            for user_id in list(chat_members):
                member = world.member(chat_id, user_id)
                if member.status == "kicked":
                    result.append(
                        {"chat_id": chat_id, "user_id": user_id, "until_date": member.until_date}
                    )
        return result

    async def actions(request: web.Request, data: dict[str, Any]) -> Any:
        chat_filter = _opt_int(request.query, "chat_id")
        user_filter = _opt_int(request.query, "user_id")
        return [
            action
            for action in tg(request).world.actions
            if (chat_filter is None or action.get("chat_id") == chat_filter)
            and (user_filter is None or action.get("user_id") == user_filter)
        ]

    async def invite_links(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        chat_filter = _opt_int(request.query, "chat_id")
        return [
            {
                **users.invite_link_api(world, link),
                "chat_id": link.chat_id,
                "joined_count": link.joined_count,
            }
            for link in world.invite_links.values()
            if chat_filter is None or link.chat_id == chat_filter
        ]

    async def join_requests(request: web.Request, data: dict[str, Any]) -> Any:
        chat_filter = _opt_int(request.query, "chat_id")
        return [
            {
                "chat_id": r.chat_id,
                "user_id": r.user_id,
                "date": r.date,
                "invite_link": r.invite_link,
            }
            for r in tg(request).world.join_requests.values()
            if chat_filter is None or r.chat_id == chat_filter
        ]

    # telegram: what users do ----------------------------------------------------------------

    async def message(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        return users.send_text(
            tg(request).world, user, _str(data, "text"), _opt_int(data, "chat_id")
        )

    async def callback_query(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        chat_id = _opt_int(data, "chat_id") or user.id
        return users.press_button(
            tg(request).world,
            bot_for(request, data),
            user,
            chat_id,
            _int(data, "message_id"),
            _str(data, "data"),
        )

    async def voice(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        if data.get("content_b64") is not None:
            try:
                content = base64.b64decode(str(data["content_b64"]), validate=True)
            except binascii.Error:
                raise ControlError("content_b64 is not valid base64") from None
        else:
            size = _int(data, "size", 1024)
            if not 0 < size <= MAX_SYNTHETIC_FILE:
                raise ControlError(f"size must be between 1 and {MAX_SYNTHETIC_FILE}")
            content = (b"OggS" + bytes(range(256)) * (size // 256 + 1))[:size]
        return users.send_voice(
            tg(request).world,
            user,
            content,
            _int(data, "duration", 3),
            _opt_int(data, "chat_id"),
            data.get("caption"),
        )

    async def join_request(request: web.Request, data: dict[str, Any]) -> Any:
        world = tg(request).world
        user = user_for(request, data)
        chat = chat_for(request, _int(data, "chat_id"))
        link = world.invite_links.get(str(data.get("invite_link", "")))
        return users.request_to_join(world, user, chat, link)

    async def channel_post(request: web.Request, data: dict[str, Any]) -> Any:
        chat = chat_for(request, _int(data, "chat_id"))
        return users.post_in_channel(tg(request).world, chat, _str(data, "text"))

    async def join_by_link(request: web.Request, data: dict[str, Any]) -> Any:
        user = user_for(request, data)
        return users.join_by_link(tg(request).world, user, _str(data, "invite_link"))

    async def sent(request: web.Request, data: dict[str, Any]) -> Any:
        chat_filter = _opt_int(request.query, "chat_id")
        bot_filter = _opt_int(request.query, "bot_id")
        return [
            message
            for bot_id, message in tg(request).world.sent
            if (chat_filter is None or message["chat"]["id"] == chat_filter)
            and (bot_filter is None or bot_id == bot_filter)
        ]

    async def callback_answers(request: web.Request, data: dict[str, Any]) -> Any:
        bot = bot_for(request, data)
        return [
            {"callback_query_id": q.id, "user_id": q.user_id, **(q.answer or {})}
            for q in bot.callback_queries.values()
            if q.answered
        ]

    async def get_limits(request: web.Request, data: dict[str, Any]) -> Any:
        return tg(request).flood.limits.to_dict()

    async def set_limits(request: web.Request, data: dict[str, Any]) -> Any:
        current = tg(request).flood.limits.to_dict()
        unknown = set(data) - set(current)
        if unknown:
            raise ControlError(f"unknown limit(s): {', '.join(sorted(unknown))}")
        merged = {**current, **data}
        try:
            limits = FloodLimits(
                enabled=bool(merged["enabled"]),
                per_bot_per_s=float(merged["per_bot_per_s"]),
                per_bot_burst=int(merged["per_bot_burst"]),
                per_chat_per_s=float(merged["per_chat_per_s"]),
                per_chat_burst=int(merged["per_chat_burst"]),
                per_group_per_min=float(merged["per_group_per_min"]),
                per_group_burst=int(merged["per_group_burst"]),
            )
        except (TypeError, ValueError):
            raise ControlError("limits must be numbers") from None
        tg(request).flood.configure(limits)
        return limits.to_dict()

    # yookassa ----------------------------------------------------------------------------------

    async def payments(request: web.Request, data: dict[str, Any]) -> Any:
        return [p.to_api() for p in yk(request).list_payments(request.query.get("status"), 10**6)]

    async def succeed(request: web.Request, data: dict[str, Any]) -> Any:
        card = data.get("card")
        if card is not None and not isinstance(card, dict):
            raise ControlError("card must be an object")
        return yk(request).confirm(request.match_info["payment_id"], card).to_api()

    async def cancel(request: web.Request, data: dict[str, Any]) -> Any:
        reason = str(data.get("reason", "general_decline"))
        party = data.get("party")
        return yk(request).decline(request.match_info["payment_id"], reason, party).to_api()

    async def add_method(request: web.Request, data: dict[str, Any]) -> Any:
        return yk(request).add_saved_method().data

    async def revoke_method(request: web.Request, data: dict[str, Any]) -> Any:
        saved = yk(request).saved_method(request.match_info["method_id"])
        saved.revoked = True
        saved.data["saved"] = False
        saved.data["status"] = "inactive"
        return saved.data

    async def script_declines(request: web.Request, data: dict[str, Any]) -> Any:
        saved = yk(request).saved_method(request.match_info["method_id"])
        reasons = data.get("reasons")
        if reasons is None:
            reasons = [_str(data, "reason")] * _int(data, "count", 1)
        if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
            raise ControlError("reasons must be a list of strings")
        saved.declines.extend(reasons)
        return {"id": saved.data["id"], "declines": list(saved.declines), "revoked": saved.revoked}

    async def get_yk_webhook(request: web.Request, data: dict[str, Any]) -> Any:
        return {"url": yk(request).webhook_url}

    async def set_yk_webhook(request: web.Request, data: dict[str, Any]) -> Any:
        url = data.get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise ControlError("url must be an http(s) URL or null")
        yk(request).webhook_url = url
        return {"url": url}

    async def checkout_page(request: web.Request) -> web.Response:
        payment = yk(request).payment(request.match_info["payment_id"]).to_api()
        title = html.escape(payment.get("description") or payment["id"])
        amount = f"{payment['amount']['value']} {payment['amount']['currency']}"
        page = (
            f"<!doctype html><title>Sandbox checkout</title><h1>{title}</h1>"
            f"<p>Amount: {html.escape(amount)}. Status: {payment['status']}.</p>"
            "<form method=post><button name=action value=pay>Pay</button> "
            "<button name=action value=cancel>Cancel</button></form>"
        )
        return web.Response(text=page, content_type="text/html")

    async def checkout_submit(request: web.Request) -> web.StreamResponse:
        svc = yk(request)
        payment_id = request.match_info["payment_id"]
        form = await request.post()
        try:
            if form.get("action") == "pay":
                payment = svc.confirm(payment_id)
            else:
                payment = svc.decline(payment_id, "expired_on_confirmation", "yoo_money")
        except YooKassaApiError as exc:
            return web.Response(text=exc.description, status=exc.status)
        return_url = (payment.confirmation or {}).get("return_url")
        if return_url:
            raise web.HTTPSeeOther(return_url)
        return web.Response(text=f"Payment {payment.id}: {payment.status}")

    router = app.router
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/_sandbox/health", health),
        ("POST", "/_sandbox/reset", reset),
        ("GET", "/_sandbox/clock", get_clock),
        ("POST", "/_sandbox/clock", set_clock),
        ("GET", "/_sandbox/faults", get_faults),
        ("POST", "/_sandbox/faults", set_faults),
        ("GET", "/_sandbox/webhooks", deliveries),
        ("GET", "/_sandbox/telegram/bots", bots),
        ("POST", "/_sandbox/telegram/users", create_user),
        ("POST", "/_sandbox/telegram/users/{user_id}/block", block),
        ("POST", "/_sandbox/telegram/users/{user_id}/unblock", unblock),
        ("POST", "/_sandbox/telegram/users/{user_id}/deactivate", deactivate),
        ("POST", "/_sandbox/telegram/chats", create_chat),
        ("GET", "/_sandbox/telegram/chats/{chat_id}/members", members),
        ("POST", "/_sandbox/telegram/chats/{chat_id}/members", set_member),
        ("GET", "/_sandbox/telegram/bans", bans),
        ("GET", "/_sandbox/telegram/actions", actions),
        ("GET", "/_sandbox/telegram/invite_links", invite_links),
        ("POST", "/_sandbox/telegram/invite_links/join", join_by_link),
        ("GET", "/_sandbox/telegram/join_requests", join_requests),
        ("POST", "/_sandbox/telegram/join_requests", join_request),
        ("POST", "/_sandbox/telegram/messages", message),
        ("POST", "/_sandbox/telegram/callback_queries", callback_query),
        ("POST", "/_sandbox/telegram/voice", voice),
        ("POST", "/_sandbox/telegram/channel_posts", channel_post),
        ("GET", "/_sandbox/telegram/sent", sent),
        ("GET", "/_sandbox/telegram/callback_answers", callback_answers),
        ("GET", "/_sandbox/telegram/limits", get_limits),
        ("PUT", "/_sandbox/telegram/limits", set_limits),
        ("GET", "/_sandbox/yookassa/payments", payments),
        ("POST", "/_sandbox/yookassa/payments/{payment_id}/succeed", succeed),
        ("POST", "/_sandbox/yookassa/payments/{payment_id}/cancel", cancel),
        ("POST", "/_sandbox/yookassa/payment_methods", add_method),
        ("POST", "/_sandbox/yookassa/payment_methods/{method_id}/revoke", revoke_method),
        ("POST", "/_sandbox/yookassa/payment_methods/{method_id}/declines", script_declines),
        ("GET", "/_sandbox/yookassa/webhook", get_yk_webhook),
        ("PUT", "/_sandbox/yookassa/webhook", set_yk_webhook),
    ]
    for method, path, handler in routes:
        router.add_route(method, path, _wrap(handler))
    router.add_get("/_sandbox/yookassa/checkout/{payment_id}", checkout_page)
    router.add_post("/_sandbox/yookassa/checkout/{payment_id}", checkout_submit)
