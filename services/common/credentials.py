"""Constant-time checks of credentials presented to the HTTP services."""

from __future__ import annotations

import hmac

from runtime.config import Secret


def secret_matches(presented: str | None, expected: Secret | None) -> bool:
    """True when `presented` equals the configured secret, compared in constant time.

    A missing configuration never matches, so an unset key disables the endpoint rather than
    opening it.
    """
    if presented is None or expected is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.reveal().encode())


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()
