"""Driving an adapter against the mock provider over real HTTP, without the gateway: build the
upstream request, send it, and read the answer back through the adapter (JSON, or a stream fed in
small slices so events split across reads are exercised)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from gateway import canonical
from gateway.catalog import DeploymentInfo, ProviderInfo
from gateway.providers.base import Adapter, ProviderError, UpstreamRequest


def deployment(
    kind: str, base_url: str, *, credential: str = "", model: str = "upstream-model"
) -> DeploymentInfo:
    provider = ProviderInfo(
        id=1,
        name=kind,
        kind=kind,
        base_url=base_url,
        credential=credential,
        connect_timeout=5,
        read_timeout=10,
    )
    return DeploymentInfo(id=1, provider=provider, upstream_model=model, priority=0, weight=1)


def send(upstream: UpstreamRequest, *, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        upstream.url, content=upstream.content, headers={**upstream.headers, **(headers or {})}, timeout=10
    )


@dataclass
class Answer:
    status: int
    response: canonical.Response | None = None
    error: ProviderError | None = None
    body: bytes = b""


def call(adapter: Adapter, dep: DeploymentInfo, request: canonical.Request, **headers: str) -> Answer:
    """A non-stream call: the parsed response, or the adapter's reading of the upstream error."""
    upstream = adapter.build_request(deployment=dep, request=request, request_id="req-test")
    reply = send(upstream, headers=headers)
    if reply.status_code != 200:
        error = adapter.error(
            status=reply.status_code,
            headers={k.lower(): v for k, v in reply.headers.items()},
            content=reply.content,
            credential=dep.provider.credential,
        )
        return Answer(reply.status_code, error=error, body=reply.content)
    return Answer(200, response=adapter.parse_response(content=reply.content), body=reply.content)


@dataclass
class Streamed:
    events: list[canonical.StreamEvent]
    done: bool
    chunks: int
    error: ProviderError | None = None

    @property
    def response(self) -> canonical.Response:
        return canonical.collect(self.events)


def stream(
    adapter: Adapter, dep: DeploymentInfo, request: canonical.Request, *, slice_size: int = 7, **headers: str
) -> Streamed:
    """A stream call, fed to the adapter's parser `slice_size` bytes at a time; a broken connection
    ends the body as it is (the parser then decides whether the answer was complete)."""
    upstream = adapter.build_request(deployment=dep, request=request, request_id="req-test")
    parser = adapter.stream_parser(credential=dep.provider.credential)
    events: list[canonical.StreamEvent] = []
    try:
        with httpx.stream(
            "POST",
            upstream.url,
            content=upstream.content,
            headers={**upstream.headers, **headers},
            timeout=10,
        ) as reply:
            assert reply.status_code == 200, reply.read()
            try:
                for chunk in reply.iter_raw():
                    for start in range(0, len(chunk), slice_size):
                        events += parser.feed(chunk[start : start + slice_size])
            except httpx.HTTPError:
                pass  # the upstream cut the stream: what arrived is all there is
        events += parser.finish()
    except ProviderError as exc:
        return Streamed(events, parser.done, parser.chunks, error=exc)
    return Streamed(events, parser.done, parser.chunks)


def last_upstream_body(mock_url: str) -> Any:
    return httpx.get(mock_url + "/_mock/requests").json()["requests"][-1]


def user(text: str) -> canonical.Message:
    return canonical.Message(canonical.Role.USER, [canonical.TextPart(text)])


def system(text: str) -> canonical.Message:
    return canonical.Message(canonical.Role.SYSTEM, [canonical.TextPart(text)])


def tokens(text: str) -> int:
    """The mock's token count of a text."""
    return (len(text) + 3) // 4
