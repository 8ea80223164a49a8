"""Who may be in the paid chats now: the one rule the bot and the monitors share.

A subscription entitles its member while it is `active`, or in `grace` whose `grace_until` has
not passed. The status alone is not enough: tsmonitor moves a grace subscription to `expired`
on its first tick after `grace_until`, and until then the row still says `grace` although the
member is out (ban_monitor removes them from the paid chats by this same rule). Staff are
entitled without a subscription.
"""

from __future__ import annotations


def entitling(alias: str = "s") -> str:
    """SQL: the subscription `alias` entitles its member now. Binds one parameter: now."""
    return f"({alias}.status = 'active' OR ({alias}.status = 'grace' AND {alias}.grace_until > ?))"


def entitled_user(alias: str = "u") -> str:
    """SQL: the user `alias` is staff, or has an entitling subscription. Binds one: now."""
    return (
        f"({alias}.role <> 'member' OR EXISTS (SELECT 1 FROM subscriptions s"
        f" WHERE s.user_id = {alias}.id AND {entitling('s')}))"
    )
