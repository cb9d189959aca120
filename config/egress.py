"""Egress guard: where Tollhouse itself may send an HTTP request that a tenant or operator addressed
(today a budget's alert webhook; the console's "send a test" button calls the same functions).

A webhook URL is someone's input, and the gateway sits inside a network: without a guard, a budget
webhook of `http://169.254.169.254/...` or `http://127.0.0.1:6379/` makes Tollhouse POST to the
cloud's metadata service or to its own Redis. So a destination must resolve only to public
(globally routable) addresses: loopback, link-local, private, shared (CGNAT), multicast,
unspecified and reserved addresses are refused, unless an operator lists them in
`TOLLHOUSE_WEBHOOK_ALLOW` (comma-separated IP addresses or CIDR ranges, e.g. `10.20.0.0/16` for an
internal alert relay).

It is checked twice. When a URL is stored (`url_refusal`), so the operator hears at once; a name
that does not resolve yet is let through, as the check that counts is the second. When a request
is sent (`post`), the name is resolved again (DNS can change after the check, or answer differently
each time), every address is checked, and the connection is made to a checked address, never by a
second lookup that could answer otherwise. Names are resolved with `socket.getaddrinfo`, the one
boundary of this module with the outside.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpcore
import httpx
from django.conf import settings

Address = IPv4Address | IPv6Address


class EgressRefused(Exception):
    """The destination resolves to an address Tollhouse may not send to; the message is one sentence."""


def _kind(address: Address) -> str | None:
    """Why `address` is not a public destination (a short noun phrase), or None if it is public."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return _kind(address.ipv4_mapped)
    for kind, flag in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a reserved", address.is_reserved),
        ("a private", address.is_private),
    ):
        if flag:
            return kind
    if not address.is_global:  # e.g. 100.64.0.0/10, shared address space
        return "a non-public"
    return None


def allowed(address: Address) -> bool:
    """A public address, or one the operator allowed (TOLLHOUSE_WEBHOOK_ALLOW)."""
    if _kind(address) is None:
        return True
    return any(address in network for network in settings.TOLLHOUSE_WEBHOOK_ALLOW)


def _literal(host: str) -> Address | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


def _refusal(host: str, address: Address) -> str:
    where = (
        f"{host} is {_kind(address)} address"
        if _literal(host) == address
        else f"{host} resolves to {_kind(address)} address ({address})"
    )
    return f"{where}: webhooks go only to public addresses unless TOLLHOUSE_WEBHOOK_ALLOW lists it."


def resolve(host: str, port: int) -> list[Address]:
    """Every address `host` resolves to (an IP literal is itself). Raises OSError if it does not."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    found: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = ip_address(str(sockaddr[0]).split("%", 1)[0])  # drop an IPv6 zone id
        if address not in found:
            found.append(address)
    return found


def checked_addresses(host: str, port: int) -> list[Address]:
    """The addresses to connect to for `host`: all of them allowed, or EgressRefused (a name that
    answers with a public and a private address is refused: which one is used is not ours to pick)."""
    addresses = resolve(host.strip("[]"), port)
    for address in addresses:
        if not allowed(address):
            raise EgressRefused(_refusal(host, address))
    return addresses


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return parts.hostname or "", port


def url_refusal(url: str) -> str | None:
    """At the time a URL is stored: one sentence if it resolves to an address it may not reach,
    else None (also when the name does not resolve now: `post` checks again when it sends)."""
    try:
        host, port = _host_port(url)
    except ValueError:  # a bad port: the URL's own validation says so
        return None
    if not host:
        return None
    try:
        checked_addresses(host, port)
    except EgressRefused as refused:
        return str(refused)
    except (OSError, UnicodeError):
        return None
    return None


class _GuardedBackend(httpcore.SyncBackend):
    """Connects to an address `checked_addresses` allowed; TLS still verifies the URL's host name."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = checked_addresses(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} does not resolve ({exc})") from None
        error: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} has no address")


# What `post` raises when the request could not be made or answered (besides EgressRefused).
SEND_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpx.InvalidURL,
)


@dataclass(frozen=True)
class Answer:
    status: int


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    """POST `body` to `url` through the guard. Redirects are not followed (the signed body goes where
    it was addressed, nowhere else) and no proxy from the environment is used (it would resolve the
    name itself). Raises EgressRefused, or httpcore's errors (ConnectError, ReadTimeout, ...)."""
    parsed = httpx.URL(url)  # as httpx sends it: an international name in its ASCII (IDNA) form
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    context = ssl.create_default_context(cafile=certifi.where())
    with httpcore.ConnectionPool(ssl_context=context, network_backend=_GuardedBackend()) as pool:
        response = pool.request(
            "POST",
            target,
            headers=list(headers.items()),
            content=body,
            extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}},
        )
    return Answer(status=response.status)
