"""The sandbox's memory across restarts (`domos sandbox --state-file PATH`).

Telegram and YooKassa never forget: a member who pressed /start last week can still be messaged,
a ban holds, a saved card can still be charged, and ids keep growing. Without a state file the
sandbox forgets all of it on restart while the database remembers, so a second `make run` on the
same data sent the monthly survey to chats the sandbox no longer knew: "chat not found", dead
letters. With a state file (`domos run` keeps it next to the SQLite files, so deleting the data
directory resets both) the sandbox keeps what the real services keep:

- Telegram: users, chats, members and bans, invite links, who blocked or deactivated the bot,
  message and update counters (message ids must not repeat: the bot stores messages by chat and
  id);
- YooKassa: payments, saved payment methods, refunds and the id counter (a repeated payment id
  would look like a duplicate notification to botapi).

Not kept: message history, sent messages, files, pending updates and join requests, webhooks
(the bot sets its own again), idempotence keys, faults, the clock and flood-limit buckets.

The state is written atomically (a temporary file, then a rename) when it changed, looked at
once a second, and at shutdown; a crash loses at most that second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from services.sandbox.telegram.service import TelegramService
from services.sandbox.telegram.state import Chat, InviteLink, Member, User
from services.sandbox.yookassa.service import Payment, SavedMethod, YooKassaService

log = structlog.get_logger("sandbox.state")

FORMAT_VERSION = 1
SAVE_INTERVAL_S = 1.0
_DECIMALS = ("amount", "captured_amount", "refunded")


def snapshot(telegram: TelegramService, yookassa: YooKassaService) -> dict[str, Any]:
    """What the sandbox keeps, as JSON-ready data."""
    world = telegram.world
    bot_ids = {bot.id for bot in world.bots.values()}
    return {
        "version": FORMAT_VERSION,
        "telegram": {
            "users": [asdict(u) for uid, u in world.users.items() if uid not in bot_ids],
            "chats": [asdict(chat) for chat in world.chats.values()],
            "members": [
                {"chat_id": chat_id, **asdict(member)}
                for chat_id, members in world.members.items()
                for member in members.values()
            ],
            "invite_links": [asdict(link) for link in world.invite_links.values()],
            "next_message_id": [[chat, n] for chat, n in world.next_message_id.items()],
            "counter": world.counter,
            "deactivated": sorted(telegram.deactivated),
            "bots": {
                str(bot.id): {
                    "next_update_id": bot.next_update_id,
                    "blocked_by": sorted(bot.blocked_by),
                }
                for bot in world.bots.values()
            },
        },
        "yookassa": {
            "payments": [_payment_data(p) for p in yookassa.payments.values()],
            "methods": [
                {"data": m.data, "revoked": m.revoked, "declines": list(m.declines)}
                for m in yookassa.methods.values()
            ],
            "refunds": list(yookassa.refunds.values()),
            "counter": yookassa.counter,
        },
    }


def _payment_data(payment: Payment) -> dict[str, Any]:
    data = asdict(payment)
    for name in _DECIMALS:
        if data[name] is not None:
            data[name] = str(data[name])
    return data


def restore(telegram: TelegramService, yookassa: YooKassaService, data: dict[str, Any]) -> None:
    """Load a snapshot into freshly built services (bots come from this run's tokens)."""
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"unknown sandbox state version {data.get('version')!r}")
    world = telegram.world
    tg = data["telegram"]
    for user in tg["users"]:
        world.users[user["id"]] = User(**user)
    for chat in tg["chats"]:
        world.add_chat(Chat(**chat))
    for member in tg["members"]:
        chat_id = member.pop("chat_id")
        world.members.setdefault(chat_id, {})[member["user_id"]] = Member(**member)
    for link in tg["invite_links"]:
        world.invite_links[link["invite_link"]] = InviteLink(**link)
    world.next_message_id.update({int(chat): int(n) for chat, n in tg["next_message_id"]})
    world.counter = int(tg["counter"])
    telegram.deactivated.update(tg["deactivated"])
    for bot in world.bots.values():
        kept = tg["bots"].get(str(bot.id))
        if kept is not None:
            bot.next_update_id = int(kept["next_update_id"])
            bot.blocked_by.update(kept["blocked_by"])
    yk = data["yookassa"]
    for payment in yk["payments"]:
        for name in _DECIMALS:
            if payment[name] is not None:
                payment[name] = Decimal(payment[name])
        yookassa.payments[payment["id"]] = Payment(**payment)
    for method in yk["methods"]:
        yookassa.methods[method["data"]["id"]] = SavedMethod(
            data=method["data"], revoked=method["revoked"], declines=deque(method["declines"])
        )
    yookassa.refunds.update({refund["id"]: refund for refund in yk["refunds"]})
    yookassa.counter = int(yk["counter"])


class StateFile:
    """Loads the sandbox's state at start, writes it when it changed."""

    def __init__(self, path: Path, telegram: TelegramService, yookassa: YooKassaService) -> None:
        self.path = path
        self.telegram = telegram
        self.yookassa = yookassa
        self._written = ""

    def load(self) -> bool:
        """Restore the last run's state; False when there is none yet."""
        if not self.path.exists():
            return False
        text = self.path.read_text(encoding="utf-8")
        restore(self.telegram, self.yookassa, json.loads(text))
        self._written = self._render()
        world = self.telegram.world
        log.info(
            "sandbox_state_loaded",
            path=str(self.path),
            users=len(world.users) - len(world.bots),
            chats=len(world.chats),
            payments=len(self.yookassa.payments),
        )
        return True

    def _render(self) -> str:
        return json.dumps(snapshot(self.telegram, self.yookassa), ensure_ascii=False, indent=1)

    def save(self) -> bool:
        """Write the state if it changed since the last write; True when written."""
        text = self._render()
        if text == self._written:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(self.path)
        self._written = text
        return True

    async def keep(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: load before serving, save while running and at the end."""
        self.load()
        task = asyncio.create_task(self._save_periodically())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self.save()

    async def _save_periodically(self) -> None:
        while True:
            await asyncio.sleep(SAVE_INTERVAL_S)
            try:
                self.save()
            except OSError as exc:  # a full disk must not stop the sandbox; retried next second
                log.warning("sandbox_state_not_saved", path=str(self.path), error=str(exc))
