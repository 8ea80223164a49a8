"""The caller of an HTTP request behind trusted proxies.

X-Forwarded-For is believed only when the direct peer is a trusted proxy; the caller is then the
right-most address that is not itself a trusted proxy (addresses further left are whatever the
caller chose to send). botapi (the webhook's allow-list) and the admin (its login lockout) read
the caller by this one rule; the API's uvicorn applies the same one (API_TRUSTED_PROXIES).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from runtime.config import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(raw: str | None) -> Address | None:
    if not raw:
        return None
    try:
        address = ipaddress.ip_address(raw.strip().strip("[]"))
    except ValueError:
        return None
    # An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: Address | None, networks: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(
    remote_addr: str | None, forwarded_for: str | None, trusted_proxies: Iterable[Network]
) -> Address | None:
    """The caller's address: the peer, or the X-Forwarded-For entry a trusted proxy vouches for."""
    trusted = tuple(trusted_proxies)
    peer = parse_address(remote_addr)
    if not forwarded_for or not in_networks(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            return None  # a garbled chain proves nothing
        if not in_networks(address, trusted):
            return address
    return parse_address(hops[0]) if hops else peer
