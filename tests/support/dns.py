"""A stand-in for DNS: `socket.getaddrinfo` answering names from a table, for the egress guard's
tests (config/egress.py resolves with it, and only with it)."""

from __future__ import annotations

import socket
from ipaddress import ip_address
from typing import Any


def fake_dns(monkeypatch: Any, answers: dict[str, list[str]]) -> list[str]:
    """Answer these names (any other does not resolve; an IP address is itself, as the real resolver
    answers it without asking DNS); returns the list of names asked."""
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        try:
            answers_ = [str(ip_address(host))]
        except ValueError:
            asked.append(host)
            answers_ = answers.get(host, [])
        if not answers_:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
            for ip in answers_
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked
