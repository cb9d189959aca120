"""The contract of one wire format the mock speaks (OpenAI chat, Anthropic Messages, Gemini,
OpenAI Responses): how a request authenticates, how it is validated into a _Plan, how the answer is
written as one JSON document or as a stream script, and how errors look. app.py runs every format
through the same steps (request log, auth, faults, JSON or stream), so a directive behaves the same
way in each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.mockserver.config import MockConfig
from gateway.mockserver.plans import _Plan


@dataclass(slots=True)
class _Script:
    """A stream as the mock sends it: `head` at once, then one `chunks` item per content piece
    (a token, a tool call half; each counted by drop_after/hang_after/error_after and paced by
    chunk_ms), then `tail` (the terminal events). `fail(n)` is the format's in-stream error event
    after n chunks."""

    head: bytes
    chunks: list[bytes]
    tail: bytes
    fail: Callable[[int], bytes]


class _Wire:
    """One wire format. Subclasses fill in every method; none does I/O."""

    name: str
    malformed_body: bytes
    malformed_event: bytes

    def supplied_credential(self, request: web.Request) -> str:
        """The credential the request carried, as this format sends it."""
        raise NotImplementedError

    def unauthorized(self, request: web.Request, api_key: str) -> web.Response | None:
        raise NotImplementedError

    def error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: str | None = None,
    ) -> web.Response:
        raise NotImplementedError

    def plan(self, config: MockConfig, request: web.Request, body: Any, valid: bool) -> _Plan:
        """Validate the body (raises _BadRequest) and resolve what to answer."""
        raise NotImplementedError

    def document(self, plan: _Plan, echo: str | None) -> bytes:
        """The non-stream answer; `echo` (a quoted credential) begins its text."""
        raise NotImplementedError

    def script(self, plan: _Plan, echo: str | None) -> _Script:
        raise NotImplementedError
