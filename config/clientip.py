"""The one truth for a request's client IP, used by the key allow-list, the login limiter, the
failed-authentication limiter and the usage row.

The address (and the scheme a trusted proxy says the client used) is decided here from the socket peer and TOLLHOUSE_TRUSTED_PROXIES alone:
`X-Forwarded-For` is believed only when the peer is a trusted proxy, and then read from the right,
skipping the trusted hops, so a client cannot prepend an address of its choosing. Whatever is
returned is a normalised, valid IP address or None, never a raw header value: it is compared
against allow-lists and stored in an inet column.

The ASGI server must not rewrite the peer itself (uvicorn does by default for 127.0.0.1, which would
make every `X-Forwarded-For` from a local process believed): `manage.py serve` turns that off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from inspect import iscoroutinefunction
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest

from config.hot import hot

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


def _client_hop(
    peer: IPv4Address | IPv6Address, forwarded_for: str, networks: tuple[Network, ...]
) -> tuple[IPv4Address | IPv6Address, int]:
    """The client behind a trusted peer, and how many X-Forwarded-For entries were read from the
    right to find it (0: the peer itself)."""
    hops = forwarded_for.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]
    depth = 0
    for hop in reversed(hops):
        address = parse_ip(hop)
        if address is None:
            # A trusted proxy passed on garbage: nothing to its left can be believed.
            return peer, depth
        depth += 1
        if not _trusted(address, networks):
            return address, depth
        peer = address
    return peer, depth


# resolve()'s answers per (peer, X-Forwarded-For), for the trusted networks they were found with:
# a gateway sees the same few peers call after call, and parsing the address was a visible share of
# a call (the bench profile). Bounded: a client varying its header only makes it start over.
_RESOLVED_MAX = 4096
_resolved: dict[tuple[str | None, str | None], str | None] = {}
_resolved_for: tuple[Network, ...] | None = None


def resolve(remote: str | None, forwarded_for: str | None) -> str | None:
    """The client address given the socket peer and the X-Forwarded-For header (if any)."""
    global _resolved_for
    networks: tuple[Network, ...] = hot.TOLLHOUSE_TRUSTED_PROXIES
    if networks is not _resolved_for:  # the setting changed (hot re-reads it): start over
        _resolved.clear()
        _resolved_for = networks
    key = (remote, forwarded_for)
    try:
        return _resolved[key]
    except KeyError:
        pass
    if len(_resolved) >= _RESOLVED_MAX:
        _resolved.clear()
    address = _resolved[key] = _resolve(remote, forwarded_for, networks)
    return address


def _resolve(remote: str | None, forwarded_for: str | None, networks: tuple[Network, ...]) -> str | None:
    peer = parse_ip(remote)
    if peer is None:
        return None
    if not networks or not forwarded_for or not _trusted(peer, networks):
        return str(peer)
    return str(_client_hop(peer, forwarded_for, networks)[0])


def forwarded_scheme(
    remote: str | None, forwarded_proto: str | None, forwarded_for: str | None
) -> str | None:
    """The scheme ("http" or "https") the client used, as a trusted proxy says in X-Forwarded-Proto;
    None when no trusted proxy said (the socket's own scheme counts then).

    The same rule as the address: only a peer in TOLLHOUSE_TRUSTED_PROXIES is believed, and a
    proxy that appends (`https, http`) is read at the hop where `resolve` found the client, so a
    value the client sent itself, left of what the proxies added, is never the one read.
    """
    peer = parse_ip(remote)
    networks: tuple[Network, ...] = hot.TOLLHOUSE_TRUSTED_PROXIES
    if peer is None or not networks or not forwarded_proto or not _trusted(peer, networks):
        return None
    schemes = forwarded_proto.rsplit(",", MAX_FORWARDED_HOPS)[-MAX_FORWARDED_HOPS:]
    depth = _client_hop(peer, forwarded_for, networks)[1] if forwarded_for else 0
    scheme = schemes[-min(max(depth, 1), len(schemes))].strip().lower()
    return scheme if scheme in {"http", "https"} else None


def from_meta(meta: Mapping[str, Any]) -> str | None:
    """The client address of a Django request (`request.META`)."""
    return resolve(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))


# Where the scheme a trusted proxy vouched for is put for Django: SECURE_PROXY_SSL_HEADER names this
# key (config/settings.py), never the raw header, which any client can send.
FORWARDED_SCHEME_META = "TOLLHOUSE_FORWARDED_SCHEME"


class ForwardedSchemeMiddleware:
    """Before SecurityMiddleware: tells Django the scheme the client used, when a trusted proxy says
    so (`forwarded_scheme`). Django alone would believe X-Forwarded-Proto from any peer once
    SECURE_PROXY_SSL_HEADER is set, so a plain-http client could skip the https redirect and the
    CSRF checks that need https."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        meta = request.META
        meta.pop(FORWARDED_SCHEME_META, None)  # only ever ours
        scheme = forwarded_scheme(
            meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_PROTO"), meta.get("HTTP_X_FORWARDED_FOR")
        )
        if scheme is not None:
            meta[FORWARDED_SCHEME_META] = scheme
        return self.get_response(request)
