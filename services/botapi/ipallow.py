"""The webhook's allow-list: YooKassa's published addresses.

YooKassa signs nothing, so its notifications are checked by source address (optional; the caller
behind trusted proxies, runtime.forwarded) and, always, by re-fetching the object from the API.
"""

from __future__ import annotations

import ipaddress

from runtime.config import Network
from runtime.forwarded import Address, in_networks

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


def allowed(address: Address | None, allowlist: tuple[Network, ...] | None) -> bool:
    """True when no allow-list is configured, or the address is inside it."""
    return allowlist is None or in_networks(address, allowlist)
