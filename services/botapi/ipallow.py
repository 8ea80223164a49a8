"""Who is calling: the client address behind trusted proxies, and the webhook allow-list.

YooKassa signs nothing, so its notifications are checked by source address (optional) and, always,
by re-fetching the object from the API. X-Forwarded-For is believed only when the direct peer is a
trusted proxy; the client is then the right-most address that is not itself a trusted proxy
(addresses further left are whatever the client chose to send).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from runtime.config import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: YooKassa's published notification sources (see NOTES.md, "YooKassa API v3").
YOOKASSA_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "185.71.76.0/27",
        "185.71.77.0/27",
        "77.75.153.0/25",
        "77.75.156.11/32",
        "77.75.156.35/32",
        "77.75.154.128/25",
        "2a02:5180::/32",
    )
)


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


def allowed(address: Address | None, allowlist: tuple[Network, ...] | None) -> bool:
    """True when no allow-list is configured, or the address is inside it."""
    return allowlist is None or in_networks(address, allowlist)
