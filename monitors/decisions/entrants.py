"""Why an entrant of a paid chat is to be removed later, as moderation_actions.reason says it.

The bot removes a stranger at once (services/bot/entry.py says who is one). When it cannot, it
records a pending ban for ban_monitor (monitors/moderation.py) instead of letting them stay:
- `stranger`: the bot knew them for a stranger, but Telegram refused the removal;
- `entrant_unchecked:<actor>`: Telegram would not say whether `actor` (a Telegram user id),
  who let them in, is an admin of the chat. The last question of entry.py's rule is asked again
  before the ban: an admin's guest stays.
"""

from __future__ import annotations

STRANGER = "stranger"
_UNCHECKED = "entrant_unchecked:"


def unchecked(actor_telegram_id: int) -> str:
    return f"{_UNCHECKED}{actor_telegram_id}"


def unchecked_actor(reason: str) -> int | None:
    """The Telegram id of who let the entrant in, when that is still to be checked."""
    if not reason.startswith(_UNCHECKED):
        return None
    return int(reason.removeprefix(_UNCHECKED))
