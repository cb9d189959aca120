"""The adapter contract: one subclass per upstream wire format.

An adapter turns the client's (OpenAI-format) request into the upstream's, and the upstream's
response, stream chunks, usage and errors back. It does no I/O: the proxy sends what it builds.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, ClassVar

import orjson
from django.conf import settings

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
        self.retry_after = retry_after_capped(retry_after)


def retry_after_capped(value: str | None) -> str | None:
    """An upstream's `Retry-After` as the client gets it: whole seconds, at most
    TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS. An upstream that says 999999999 (or a date next
    year) must not park the client's retries for ever; an HTTP-date becomes the seconds until it,
    and a value that is neither is dropped rather than passed on."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = int(text[:12])  # 12 digits are far past any cap
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # not an HTTP-date, which is always GMT
            return None
        seconds = max(0, math.ceil(when.timestamp() - time.time()))
    return str(min(seconds, settings.TOLLHOUSE_UPSTREAM_RETRY_AFTER_MAX_SECONDS))


# Credential shapes of the common providers and of ourselves, for texts that quote a key that is
# not the provider's own (a client's key passed through a relay, say): OpenAI and compatible relays
# (sk-, sk-proj-, sk-ant-), Groq (gsk_), xAI (xai-), Google (AIza), GitHub (gh?_), Slack (xox?-),
# AWS access key ids, Tollhouse (th-), bearer tokens, key=/token= pairs, JWTs, and long hex or
# random-looking runs (hex keys, base64 secrets).
_SECRETISH = re.compile(
    r"\b(?:sk|gsk|xai|th|pk|rk)[-_][A-Za-z0-9_\-*]{6,}"
    r"|AIza[0-9A-Za-z_\-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|Bearer\s+\S+"
    r"|\b(?:api[_-]?key|key|token|secret|password|credential)s?[\"']?\s*[=:]\s*[\"']?[^\s\"',;]+"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"
    r"|\b[0-9a-fA-F]{32,}\b"
    r"|\b(?=[A-Za-z0-9+/_\-]*[0-9])(?=[A-Za-z0-9+/_\-]*[A-Za-z])[A-Za-z0-9+/_\-]{32,}={0,2}",
    re.I,
)
# A quoted fragment of the provider's own credential at least this long is cut as well.
_FRAGMENT = 10
REDACTED = "[redacted]"


def _fragments(credential: str) -> set[str]:
    if len(credential) <= _FRAGMENT:
        return {credential} if credential else set()
    return {credential[i : i + _FRAGMENT] for i in range(len(credential) - _FRAGMENT + 1)}


def redact(text: str, *, credential: str = "") -> str:
    """A text from an upstream, safe to show a client or log.

    Upstream error texts sometimes quote the credential they were sent. The provider's own
    credential is cut wherever it appears, whatever its shape, as is any word that contains a
    fragment of it; then anything that looks like a key. Then the text is capped.
    """
    if credential:
        text = text.replace(credential, REDACTED)
        fragments = _fragments(credential)
        words = text.split()
        for word in words:
            if len(word) >= _FRAGMENT and any(
                word[i : i + _FRAGMENT] in fragments for i in range(len(word) - _FRAGMENT + 1)
            ):
                text = text.replace(word, REDACTED)
    return _SECRETISH.sub(REDACTED, text)[:500]


# Shorter credentials are placeholders (vLLM's `EMPTY`, Ollama's `ollama`) that guard nothing; cutting
# them out of answers would only cut ordinary words (`ollama run ...`).
MIN_CREDENTIAL_LENGTH = 8
_REDACTED_BYTES = REDACTED.encode()


@lru_cache(maxsize=256)
def credential_forms(credential: str) -> tuple[bytes, ...]:
    """The bytes an upstream's answer may quote `credential` as: as is, and inside a JSON string as
    the common encoders escape it (orjson: as is; Python's `ensure_ascii`: non-ASCII as
    `\\uXXXX`; PHP: `/` as `\\/`). Longest first, so an escaped form goes before a part of it could."""
    if len(credential) < MIN_CREDENTIAL_LENGTH:
        return ()
    forms = {credential.encode("utf-8", "replace"), json.dumps(credential)[1:-1].encode()}
    # A lone surrogate: no encoder writes it, and no header carries it.
    with contextlib.suppress(orjson.JSONEncodeError):
        forms.add(orjson.dumps(credential)[1:-1])
    forms |= {form.replace(b"/", b"\\/") for form in forms if b"/" in form}
    return tuple(sorted(forms, key=len, reverse=True))


def redact_credential(data: bytes, credential: str) -> bytes:
    """`data`, an upstream's successful answer (a JSON body or a stream event), with the provider's
    own credential cut out wherever it is quoted. The rule of every path that passes an upstream's
    bytes on, JSON or stream, success or error (`redact` does it for error texts): the gateway's own
    credential never leaves. An answer almost never quotes it, so this costs a substring search per
    form (one, for an ASCII credential without `/`) and copies nothing."""
    return redact_forms(data, credential_forms(credential))


def redact_forms(data: bytes, forms: tuple[bytes, ...]) -> bytes:
    """`redact_credential` with the credential's forms looked up already (a stream, once)."""
    for form in forms:
        if form in data:
            return _cutter(forms).sub(_cut, data)
    return data


@lru_cache(maxsize=256)
def _cutter(forms: tuple[bytes, ...]) -> re.Pattern[bytes]:
    # A JSON escape is skipped as one unit, so a form is never matched from inside one (the digits of
    # `\u00e9` followed by the credential's tail are not the credential).
    return re.compile(b"(" + b"|".join(map(re.escape, forms)) + rb")|\\u[0-9A-Fa-f]{4}|\\.", re.S)


def _cut(match: re.Match[bytes]) -> bytes:
    return _REDACTED_BYTES if match.group(1) is not None else match.group(0)


def starts_as_document(head: bytes) -> bool:
    """Whether an answer to a stream request that begins with `head` (not blank) is a document, JSON
    or an HTML page, rather than server-sent events, whose first line is a field (`data:`, `event:`,
    `id:`, `retry:`) or a comment (`:`). Some upstreams ignore `stream` and answer the whole
    completion, or an error, as JSON: those bytes must not reach the client as if they were events."""
    return head.lstrip()[:1] in (b"{", b"[", b"<")


def not_a_stream() -> ProviderError:
    return ProviderError(
        "The upstream provider answered the stream request with a document instead of a stream.",
        status=502,
        retryable=False,
        kind="bad_response",
    )


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

    def stream_translator(self, *, client_wants_usage: bool, credential: str) -> StreamTranslator:
        """`credential` is the provider's own: an event that quotes it is redacted (`redact_forms`)
        before it is read or goes out. An answer that `starts_as_document` is never relayed: the
        translator raises `not_a_stream()` (the proxy sends an error event instead)."""
        raise NotImplementedError

    def error(
        self, *, status: int, headers: dict[str, str], content: bytes, credential: str
    ) -> ProviderError:
        """An upstream error response as a ProviderError; any upstream text in its message goes
        through `redact` with the provider's credential first."""
        raise NotImplementedError
