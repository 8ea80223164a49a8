"""Bot settings: the runtime settings plus what only the bot reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.config import Env, Settings
from runtime.errors import ConfigError


@dataclass(frozen=True)
class BotSettings:
    runtime: Settings
    #: Where YooKassa sends the member after paying; None: the bot's own t.me link.
    payment_return_url: str | None
    #: Long-polling timeout of getUpdates.
    polling_timeout_s: int
    #: How long a stop waits for handlers in flight before closing the database.
    drain_timeout_s: float
    #: An open payment younger than this is offered again instead of creating a new one.
    payment_reuse_s: int
    #: PAID_CHAT_IDS: the community's paid chats, marked managed at start. Staff may mark more
    #: in the admin; a chat the bot merely sees (a stranger may add it anywhere) never is.
    paid_chat_ids: frozenset[int] = frozenset()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BotSettings:
        environ = os.environ if environ is None else environ
        env = Env(environ)
        return_url = env.text("BOT_PAYMENT_RETURN_URL")
        return cls(
            runtime=Settings.from_env(environ),
            payment_return_url=(
                env.url("BOT_PAYMENT_RETURN_URL", return_url) if return_url else None
            ),
            polling_timeout_s=env.integer("BOT_POLLING_TIMEOUT_S", 10, minimum=1, maximum=50),
            drain_timeout_s=env.number("BOT_DRAIN_TIMEOUT_S", 10.0),
            payment_reuse_s=env.integer("BOT_PAYMENT_REUSE_S", 3600, minimum=0),
            paid_chat_ids=_chat_ids(env),
        )


def _chat_ids(env: Env) -> frozenset[int]:
    raw = env.text("PAID_CHAT_IDS") or ""
    ids: set[int] = set()
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            chat_id = int(part)
        except ValueError:
            raise ConfigError("PAID_CHAT_IDS", f"{part!r} is not a chat id") from None
        if chat_id >= 0:
            raise ConfigError("PAID_CHAT_IDS", f"{chat_id} is not a group or channel id (< 0)")
        ids.add(chat_id)
    return frozenset(ids)
