"""What Telegram signs for a client, built here for the programs that act as one.

The public API accepts a Telegram user's proof of identity (services/api/identity.py, which checks
it with aiogram's helpers). Telegram itself issues those proofs to a Mini App (`initData`) and to a
site with the Login Widget; the demo, the benchmarks and the tests need the same proofs without a
Telegram client, so they sign them with the bot token the way Telegram does
(core.telegram.org/bots/webapps#validating-data-received-via-the-web-app and
core.telegram.org/widgets/login#checking-authorization).

Both proofs are an HMAC-SHA256 of the data-check-string (every field but `hash`, sorted by key,
`key=value` joined by newlines); only the secret key differs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from urllib.parse import urlencode

#: `Authorization: tma <initData>`: the scheme Telegram's Mini App docs use.
MINI_APP_SCHEME = "tma"
#: `Authorization: tglogin <Login Widget fields as a query string>`.
LOGIN_WIDGET_SCHEME = "tglogin"


def _check_string(fields: Mapping[str, str]) -> bytes:
    return "\n".join(f"{k}={fields[k]}" for k in sorted(fields)).encode()


def sign_init_data(
    bot_token: str, user: Mapping[str, object], *, auth_date: int | None = None
) -> str:
    """A Mini App initData query string for `user` (a Telegram User object, `id` at least)."""
    fields = {
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        "user": json.dumps(dict(user), separators=(",", ":"), ensure_ascii=False),
    }
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    fields["hash"] = hmac.new(secret, _check_string(fields), hashlib.sha256).hexdigest()
    return urlencode(fields)


def sign_login(bot_token: str, user_id: int, *, auth_date: int | None = None, **extra: str) -> str:
    """Login Widget data for `user_id` as a query string (`first_name`, `username`... in extra)."""
    fields = {
        "id": str(user_id),
        "auth_date": str(int(time.time()) if auth_date is None else auth_date),
        **extra,
    }
    secret = hashlib.sha256(bot_token.encode()).digest()
    fields["hash"] = hmac.new(secret, _check_string(fields), hashlib.sha256).hexdigest()
    return urlencode(fields)


def mini_app_authorization(
    bot_token: str, telegram_id: int, *, first_name: str = "Member", auth_date: int | None = None
) -> str:
    """The `Authorization` header value a Mini App of member `telegram_id` would send (Telegram
    always names the user's `first_name`; aiogram's parser requires it)."""
    user = {"id": telegram_id, "first_name": first_name}
    init_data = sign_init_data(bot_token, user, auth_date=auth_date)
    return f"{MINI_APP_SCHEME} {init_data}"
