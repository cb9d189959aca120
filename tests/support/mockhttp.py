"""Raw HTTP against the mock provider, for the wire-format tests: one request, its status, headers,
JSON body or server-sent events (with their `event:` names), as a client that is not an SDK sees
them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Event:
    name: str | None
    data: Any  # parsed JSON, or the raw text when it is not JSON


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    events: list[Event] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    def names(self) -> list[str | None]:
        return [event.name for event in self.events]


def parse_sse(body: bytes) -> list[Event]:
    events = []
    text = body.decode().replace("\r\n", "\n")
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        raw = "\n".join(data)
        try:
            parsed: Any = json.loads(raw)
        except ValueError:
            parsed = raw
        events.append(Event(name, parsed))
    return events


def post(
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    content = raw if raw is not None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        response = httpx.post(url, content=content, headers=all_headers, timeout=timeout)
    except httpx.RemoteProtocolError:
        raise
    reply = Reply(response.status_code, response.headers, response.content)
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        reply.events = parse_sse(response.content)
    return reply


def stream_until_closed(url: str, body: Any, *, headers: dict[str, str] | None = None) -> tuple[bytes, bool]:
    """A stream read until the server closes it: (what arrived, whether it ended cleanly)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    received = b""
    try:
        with httpx.stream(
            "POST", url, content=json.dumps(body).encode(), headers=all_headers, timeout=10
        ) as response:
            for chunk in response.iter_raw():
                received += chunk
    except httpx.HTTPError:
        return received, False
    return received, True
