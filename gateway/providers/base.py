"""The adapter contract: one subclass per upstream wire format.

An adapter turns the client's (OpenAI-format) request into the upstream's, and the upstream's
response, stream chunks, usage and errors back. It does no I/O: the proxy sends what it builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from gateway.catalog import DeploymentInfo


@dataclass
class Usage:
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False  # the upstream said so
    estimated: bool = False  # the upstream never said; the gateway counted what it saw


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    content: bytes


class ProviderError(Exception):
    """An upstream failure. `retryable` says whether another attempt (or deployment) may succeed.

    `status` is what the client gets; `message` is safe to show (no credential, no upstream URL).
    """

    def __init__(
        self, message: str, *, status: int, retryable: bool, kind: str, retry_after: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.kind = kind
        self.retry_after = retry_after


_SECRETISH = re.compile(r"(sk-[A-Za-z0-9_\-*]{6,}|th-[A-Za-z0-9*]{6,}|Bearer\s+\S+|key[=:]\s*\S+)", re.I)


def redact(text: str) -> str:
    """Upstream error texts sometimes quote the credential they rejected; cut anything key-like."""
    return _SECRETISH.sub("[redacted]", text)[:500]


class StreamTranslator:
    """Consumes upstream stream bytes, returns what to send to the client, and collects usage."""

    usage: Usage
    done: bool
    chunks: int  # content-bearing chunks passed on: the completion estimate if usage never comes

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""


class Adapter:
    kind: ClassVar[str]

    def chat_request(
        self, *, deployment: DeploymentInfo, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        raise NotImplementedError

    def embeddings_request(
        self, *, deployment: DeploymentInfo, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        raise NotImplementedError

    def parse_response(self, *, content: bytes) -> tuple[bytes, Usage, str]:
        """A successful non-stream response: (bytes for the client, usage, served model)."""
        raise NotImplementedError

    def stream_translator(self, *, client_wants_usage: bool) -> StreamTranslator:
        raise NotImplementedError

    def error(self, *, status: int, headers: dict[str, str], content: bytes) -> ProviderError:
        raise NotImplementedError
