"""The one truth for a request's client IP, used by the key allow-list, the login limiter, the
failed-authentication limiter and the usage row.

The address is decided here from the socket peer and TOLLHOUSE_TRUSTED_PROXIES alone:
`X-Forwarded-For` is believed only when the peer is a trusted proxy, and then read from the right,
skipping the trusted hops, so a client cannot prepend an address of its choosing. Whatever is
returned is a normalised, valid IP address or None, never a raw header value: it is compared
against allow-lists and stored in an inet column.

The ASGI server must not rewrite the peer itself (uvicorn does by default for 127.0.0.1, which would
make every `X-Forwarded-For` from a local process believed): `manage.py serve` turns that off.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from django.conf import settings

Network = IPv4Network | IPv6Network
# More hops than any real proxy chain; a longer header is read only this far from the right.
MAX_FORWARDED_HOPS = 20


def parse_ip(value: str | None) -> IPv4Address | IPv6Address | None:
    if not value or len(value) > 64:
        return None
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None
    # An IPv4 client reached over an IPv6 socket is the IPv4 client.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPv4Address | IPv6Address, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def resolve(remote: str | None, forwarded_for: str | None) -> str | None:
    """The client address given the socket peer and the X-Forwarded-For header (if any)."""
    peer = parse_ip(remote)
    if peer is None:
        return None
    networks: tuple[Network, ...] = settings.TOLLHOUSE_TRUSTED_PROXIES
    if not networks or not forwarded_for or not _trusted(peer, networks):
        return str(peer)
    hops = forwarded_for.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            # A trusted proxy passed on garbage: nothing to its left can be believed.
            return str(peer)
        if not _trusted(address, networks):
            return str(address)
        peer = address
    return str(peer)


def from_meta(meta: Mapping[str, Any]) -> str | None:
    """The client address of a Django request (`request.META`)."""
    return resolve(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))
