"""The adapter contract: one subclass per upstream wire format (DESIGN.md §5).

An adapter translates the canonical call (gateway/canonical.py) to its upstream's wire format and
the upstream's answer, stream, usage and errors back. It does no I/O: the executor
(gateway/executor.py) sends what it builds, with the timeouts, retries and fallbacks of every call.

Two ways through an adapter:
- translated: `build_request(canonical.Request)` → upstream; `parse_response` / `stream_parser`
  → canonical `Response` / `StreamEvent`s, which the client's codec renders in its dialect;
- pass-through, when the client's dialect is one of the adapter's `native_dialects`: the client's
  body goes up with only the model replaced (`passthrough_request`), and the upstream's bytes come
  back untouched (`passthrough_response`, `passthrough_stream`), read only for usage. This is the
  chat fast path: no re-encoding.

Adding a wire format is adding one module with one `Adapter` subclass and one line in
gateway/providers/__init__.py; `Provider.kind` offers exactly the registered kinds.
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

from gateway import canonical
from gateway.canonical import Usage
from gateway.catalog import DeploymentInfo


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
        self.upstream_status = 0  # the upstream's HTTP status, 0 if it never answered (attempt log)


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
    """Pass-through streams: consumes upstream stream bytes, returns what to send to the client as
    is (or with a hidden usage chunk left out), and collects usage on the way."""

    usage: Usage
    done: bool  # the upstream's own terminal event was seen
    chunks: int  # content-bearing chunks passed on: the completion estimate if usage never comes
    served_model: str = ""

    def feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""


class StreamParser:
    """Translated streams: consumes upstream stream bytes and yields canonical stream events.

    `feed` returns the events completed by `data` (an event split across reads waits for its
    end); `finish` those left at the end of the body. The parser emits `canonical.Finish` when the
    upstream ended its answer properly, and sets `done`; a body that ends without that is a broken
    stream (the executor sends the dialect's error event). The provider's credential is redacted
    (`redact_forms`) before an event is read, and a document sent instead of a stream raises
    `not_a_stream()`."""

    done: bool = False
    chunks: int = 0  # content-bearing events seen: the completion estimate if usage never comes

    def feed(self, data: bytes) -> list[canonical.StreamEvent]:
        raise NotImplementedError

    def finish(self) -> list[canonical.StreamEvent]:
        return []


class Adapter:
    kind: ClassVar[str]  # Provider.kind
    label: ClassVar[str]  # its name in the admin's choices
    # The wire format, as the usage row's `upstream_format` names it (billing.events.UPSTREAM_FORMATS).
    wire: ClassVar[str]
    # The client dialects (gateway/dialects/) whose requests this upstream takes as they are.
    native_dialects: ClassVar[frozenset[str]] = frozenset()

    # -- translated ------------------------------------------------------------------------------

    def build_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest:
        """The upstream request for `request`, with `deployment.upstream_model` as the model.
        Thinking / reasoning parts whose `provider` is not this adapter's `kind` are dropped;
        `request.betas` are sent only by an adapter whose upstream knows them (Anthropic)."""
        raise NotImplementedError

    def parse_response(self, *, content: bytes) -> canonical.Response:
        """A successful non-stream answer; `ProviderError(kind="bad_response")` if unreadable."""
        raise NotImplementedError

    def stream_parser(self, *, credential: str) -> StreamParser:
        raise NotImplementedError

    def count_tokens_request(
        self, *, deployment: DeploymentInfo, request: canonical.Request, request_id: str
    ) -> UpstreamRequest | None:
        """The upstream's own token count for `request`'s prompt, where it has one; None: the
        gateway estimates (gateway.calls.estimate_tokens)."""
        return None

    def parse_count_tokens(self, *, content: bytes) -> int:
        raise NotImplementedError

    # -- pass-through ----------------------------------------------------------------------------

    def passthrough_request(
        self,
        *,
        deployment: DeploymentInfo,
        dialect: str,
        body: dict[str, Any],
        request: canonical.Request | None,
        request_id: str,
    ) -> UpstreamRequest:
        """`body` as the client sent it (validated by its codec) in `dialect`, one of
        `native_dialects`, for `deployment`. `request` carries what the headers said (betas,
        session); its messages are empty unless the call was also translated."""
        raise NotImplementedError

    def passthrough_response(self, *, dialect: str, content: bytes) -> tuple[bytes, Usage, str]:
        """A successful pass-through answer: (bytes for the client, usage, served model)."""
        raise NotImplementedError

    def passthrough_stream(
        self, *, dialect: str, client_wants_usage: bool, credential: str
    ) -> StreamTranslator:
        """`credential` is the provider's own: an event that quotes it is redacted (`redact_forms`)
        before it is read or goes out. An answer that `starts_as_document` is never relayed: the
        translator raises `not_a_stream()` (the executor sends an error event instead)."""
        raise NotImplementedError

    # -- errors ----------------------------------------------------------------------------------

    def error(
        self, *, status: int, headers: dict[str, str], content: bytes, credential: str
    ) -> ProviderError:
        """An upstream error response as a ProviderError; any upstream text in its message goes
        through `redact` with the provider's credential first. A prompt too long for the model is
        `kind="context_length_exceeded"` (the executor falls back to the next route on it)."""
        raise NotImplementedError


def upstream_error(
    *, status: int, headers: dict[str, str], message: str, credential: str, context_exceeded: bool = False
) -> ProviderError:
    """The usual reading of an upstream's HTTP error, for every adapter: 429 and 5xx retryable (with
    the upstream's `Retry-After`), 408/504 timeouts, the gateway's own credential refused (401/403)
    a 502, a rejected request a 400 quoting the upstream's message (redacted). `message` is the
    upstream's error text, however its wire format carries it; `context_exceeded` when the format
    says the prompt is too long for the model."""
    if context_exceeded:
        detail = f": {redact(message, credential=credential)}" if message else "."
        return ProviderError(
            f"The prompt is too long for the model{detail}",
            status=400,
            retryable=False,
            kind="context_length_exceeded",
        )
    if status == 429:
        return ProviderError(
            "The upstream provider is rate limiting; retry later.",
            status=429,
            retryable=True,
            kind="upstream_rate_limited",
            retry_after=headers.get("retry-after"),
        )
    if status in (401, 403):
        # The gateway's own credential was refused: the client can do nothing about it.
        return ProviderError(
            "The upstream provider refused the gateway's credentials.",
            status=502,
            retryable=True,
            kind="upstream_auth",
        )
    if status in (400, 413, 422):
        detail = f": {redact(message, credential=credential)}" if message else "."
        return ProviderError(
            f"The upstream provider rejected the request{detail}",
            status=400,
            retryable=False,
            kind="upstream_rejected",
        )
    if status in (408, 504):
        return ProviderError(
            "The upstream provider timed out.",
            status=504,
            retryable=True,
            kind="upstream_timeout",
        )
    return ProviderError(
        f"The upstream provider failed (HTTP {status}).",
        status=502,
        retryable=status >= 500,
        kind="upstream_error",
        retry_after=headers.get("retry-after") if status == 503 else None,
    )
