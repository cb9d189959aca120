"""The codec contract: one subclass per client dialect (DESIGN.md §3).

A codec owns everything the client sees of its dialect: its routes, how a request is read and
validated (a bad one is the dialect's 400, naming the field), how an answer, a stream and an error
are written back. It does no I/O and knows no upstream: gateway/executor.py runs the call, an
adapter (gateway/providers/) speaks to the upstream, in canonical terms (gateway/canonical.py) or,
when the upstream speaks the client's dialect natively, by passing the client's bytes through.

`parse` is cheap on purpose: it validates the body and reads what the request path needs (model,
stream flag, user, session, prompt size, output limit) into an `Inbound`; the canonical request is
built from it only when the call is translated (`Inbound.canonical()`), so a pass-through call
(chat to an OpenAI upstream, the fast path) never builds one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from django.http import HttpResponse

from billing.events import session_clean
from gateway import canonical, errors
from gateway.canonical import Request as CanonicalRequest

# The agent-session headers, in order of preference: Claude Code, generic, Codex (codex-rs sends
# `session-id` on every Responses request, codex-api/src/requests/headers.rs; older releases
# `session_id`: Django reads both under this one name).
SESSION_HEADERS = ("x-claude-code-session-id", "x-session-id", "session-id")


@dataclass(frozen=True)
class Route:
    path: str
    method: str  # the one method it answers
    operation: str  # what the codec does there: "chat", "embeddings", "messages", "count_tokens", ...


@dataclass
class Inbound:
    """A parsed, validated request: what the request path reads, and the body to pass through."""

    dialect: str
    operation: str
    body: dict[str, Any]  # the client's JSON body, validated
    model: str
    stream: bool = False
    user: str = ""
    session: str = ""
    prompt_chars: int = 0
    # Which body field limits the output, and what it asked (None: nothing asked).
    output_field: str = ""
    max_output_tokens: int | None = None
    n: int = 1  # choices asked for (OpenAI chat `n`)
    client_wants_usage: bool = False  # a chat stream's `stream_options.include_usage`
    betas: list[str] = field(default_factory=list)
    _canonical: canonical.Request | None = None
    _codec: Codec | None = None

    def canonical(self) -> canonical.Request:
        """The canonical request (built once, on first use)."""
        if self._canonical is None:
            assert self._codec is not None
            self._canonical = self._codec.to_canonical(self)
        return self._canonical

    def header_request(self) -> CanonicalRequest:
        """For a pass-through call: what the headers said (betas, session), without translating the
        body (which may hold what only the upstream's own dialect can carry)."""
        return CanonicalRequest(
            model=self.model, messages=[], stream=self.stream, session=self.session, betas=list(self.betas)
        )

    def cap_output(self, tokens: int) -> None:
        """Lower the output limit (admission's budget cap, the route's maximum): in the body for
        pass-through and in the canonical request for translation."""
        self.max_output_tokens = tokens
        if self.output_field:
            self.body[self.output_field] = tokens
        if self._canonical is not None:
            self._canonical.max_output_tokens = tokens


class StreamRenderer:
    """Canonical stream events → the dialect's server-sent events, ending in its terminal event."""

    content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def render(self, event: canonical.StreamEvent) -> bytes:
        raise NotImplementedError

    def keepalive(self) -> bytes:
        """Sent on a long wait for the upstream (b"": the dialect has none)."""
        return b""

    def terminal(self) -> bytes:
        """The dialect's end of stream after the last event (idempotent: b"" the second time)."""
        raise NotImplementedError

    def error(self, error: errors.GatewayError) -> bytes:
        """The dialect's error event for a stream that broke, with whatever ends the stream."""
        raise NotImplementedError


class Codec:
    name: ClassVar[str]  # the dialect, recorded as the usage row's `ingress`
    endpoint: ClassVar[str]  # the usage row's `endpoint` and the metrics label
    routes: ClassVar[tuple[Route, ...]]
    # Whether an upstream that does not speak the dialect can serve it (through the canonical
    # request); embeddings cannot: only adapters that list the dialect as native are tried.
    translatable: ClassVar[bool] = True

    def parse(self, *, body: dict[str, Any], headers: Mapping[str, str], operation: str) -> Inbound:
        """Validate `body` (a JSON object) for `operation`; a bad one raises errors.BadRequest
        naming the field, which `error_response` renders in the dialect's shape."""
        raise NotImplementedError

    def to_canonical(self, inbound: Inbound) -> canonical.Request:
        raise NotImplementedError

    def render_response(self, response: canonical.Response, *, inbound: Inbound) -> bytes:
        raise NotImplementedError

    def stream_renderer(self, *, inbound: Inbound, request_id: str) -> StreamRenderer:
        raise NotImplementedError

    def error_body(self, error: errors.GatewayError) -> dict[str, Any]:
        return error.body()  # OpenAI's shape; codecs of other dialects override it

    def error_status(self, error: errors.GatewayError) -> int:
        return error.status

    def error_response(self, error: errors.GatewayError) -> HttpResponse:
        response = HttpResponse(
            orjson.dumps(self.error_body(error)),
            status=self.error_status(error),
            content_type="application/json",
        )
        for name, value in error.headers.items():
            response[name] = value
        return response

    def stream_error(self, error: errors.GatewayError) -> bytes:
        """The error event of a pass-through stream that broke (no renderer was made)."""
        return b"data: " + orjson.dumps(self.error_body(error)) + b"\n\n"

    def passthrough_terminal(self) -> bytes:
        """What ends a pass-through stream whose upstream sent no terminal event of its own, after
        `stream_error` (b"": the error event is the end)."""
        return b""

    def _new_inbound(self, **kwargs: Any) -> Inbound:
        inbound = Inbound(dialect=self.name, **kwargs)
        inbound._codec = self
        return inbound


def session_from(headers: Mapping[str, str]) -> str:
    """The agent session a client names in its headers, "" if none (or one not fit to store)."""
    for name in SESSION_HEADERS:
        value = session_clean(headers.get(name) or "")
        if value:
            return value
    return ""


def session_from_scope(scope: Mapping[str, Any]) -> str:
    """Codex releases that send `session_id` (with an underscore): Django drops such headers from
    `request.headers` (they could spoof hyphenated ones), so it is read from the ASGI scope."""
    for name, value in scope.get("headers") or ():
        if name.lower() == b"session_id":
            return session_clean(value.decode("latin-1"))
    return ""
