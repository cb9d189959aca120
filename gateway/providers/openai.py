"""The OpenAI wire format: OpenAI itself and every OpenAI-compatible upstream.

Responses and stream chunks are passed through byte for byte; only the chunk carrying usage is
parsed, and it is hidden from clients that did not ask for usage (the gateway always asks).
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson

from gateway.catalog import DeploymentInfo
from gateway.providers.base import (
    Adapter,
    ProviderError,
    StreamTranslator,
    UpstreamRequest,
    Usage,
    credential_forms,
    not_a_stream,
    redact,
    redact_forms,
    starts_as_document,
)

# An answer to a stream request that is a document is kept, up to this size, for the usage the
# upstream reports in it (the upstream bills the call all the same); a larger one fails at once.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024


def usage_from(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    prompt = data.get("prompt_tokens")
    if not isinstance(prompt, int):
        return None
    details = data.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    completion = data.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt,
        cached_tokens=cached if isinstance(cached, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
        reported=True,
    )


class OpenAIStream(StreamTranslator):
    """Server-sent events, split on blank lines; every event but a hidden usage chunk goes out as is."""

    def __init__(self, *, client_wants_usage: bool, credential: str = "") -> None:
        self.client_wants_usage = client_wants_usage
        self._credential_forms = credential_forms(credential)
        self.usage = Usage()
        self.done = False
        self.chunks = 0
        self.served_model = ""
        self._buffer = b""
        self._document: bool | None = None  # what the first non-blank byte said; None: not seen yet

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        if self._document is not False and self._is_document():
            return b""
        if b"\n\n" not in self._buffer and b"\r\n\r\n" not in self._buffer:
            return b""
        if b"\r\n" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        if self._credential_forms:
            # Before any event is read, so not even the served model can carry it. An event stays
            # in the buffer until it is whole, so a quote split across reads is found whole here.
            self._buffer = redact_forms(self._buffer, self._credential_forms)
        *events, self._buffer = self._buffer.split(b"\n\n")
        out = []
        for event in events:
            if self._keep(event):
                out.append(event)
                out.append(b"\n\n")
        return b"".join(out)

    def finish(self) -> bytes:
        if self._document is not False and self._is_document():
            self._read_document()
            raise not_a_stream()
        rest, self._buffer = redact_forms(self._buffer, self._credential_forms), b""
        return rest if rest.strip() and self._keep(rest) else b""

    def _is_document(self) -> bool:
        """Whether the answer is a document, not events (`starts_as_document`): it is then kept
        whole, and nothing of it goes out."""
        if self._document is None:
            if not self._buffer.strip():
                return False
            self._document = starts_as_document(self._buffer)
        if self._document and len(self._buffer) > MAX_DOCUMENT_BYTES:
            raise not_a_stream()
        return self._document

    def _read_document(self) -> None:
        """The usage and model of a JSON completion sent instead of a stream: what the upstream bills."""
        try:
            data = orjson.loads(redact_forms(self._buffer, self._credential_forms))
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            self.served_model = str(data.get("model") or "")
            self.usage = usage_from(data.get("usage")) or self.usage

    def _keep(self, event: bytes) -> bool:
        if not event.startswith(b"data:"):
            return True  # comments, event:/id: lines: pass through
        payload = event[5:].strip()
        if payload == b"[DONE]":
            self.done = True
            return True
        if not self.served_model or b'"usage":{' in payload or b'"usage": {' in payload:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return True
            if not isinstance(chunk, dict):
                return True
            self.served_model = self.served_model or str(chunk.get("model") or "")
            usage = usage_from(chunk.get("usage"))
            if usage is not None:
                self.usage = usage
                if not chunk.get("choices"):
                    return self.client_wants_usage
        # For the estimate when usage never arrives: about one token per content-bearing chunk.
        if b'"content":"' in payload and b'"content":""' not in payload:
            self.chunks += 1
        return True


class OpenAIAdapter(Adapter):
    kind: ClassVar[str] = "openai"

    def _request(
        self, deployment: DeploymentInfo, path: str, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        headers = {"content-type": "application/json", "x-request-id": request_id}
        if deployment.provider.credential:
            headers["authorization"] = f"Bearer {deployment.provider.credential}"
        return UpstreamRequest(
            url=deployment.provider.base_url + path, headers=headers, content=orjson.dumps(body)
        )

    def chat_request(
        self, *, deployment: DeploymentInfo, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        upstream = {**body, "model": deployment.upstream_model}
        if upstream.get("stream"):
            # Always ask for usage, so every streamed call is billed from the upstream's own figures.
            upstream["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        return self._request(deployment, "/chat/completions", upstream, request_id)

    def embeddings_request(
        self, *, deployment: DeploymentInfo, body: dict[str, Any], request_id: str
    ) -> UpstreamRequest:
        return self._request(
            deployment, "/embeddings", {**body, "model": deployment.upstream_model}, request_id
        )

    def parse_response(self, *, content: bytes) -> tuple[bytes, Usage, str]:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise ProviderError(
                "The upstream provider returned a malformed response.",
                status=502,
                retryable=True,
                kind="bad_response",
            ) from exc
        if not isinstance(data, dict):
            raise ProviderError(
                "The upstream provider returned a malformed response.",
                status=502,
                retryable=True,
                kind="bad_response",
            )
        usage = usage_from(data.get("usage")) or Usage()
        return content, usage, str(data.get("model") or "")

    def stream_translator(self, *, client_wants_usage: bool, credential: str) -> OpenAIStream:
        return OpenAIStream(client_wants_usage=client_wants_usage, credential=credential)

    def error(
        self, *, status: int, headers: dict[str, str], content: bytes, credential: str
    ) -> ProviderError:
        message = ""
        try:
            data = orjson.loads(content)
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                message = str(data["error"].get("message") or "")
        except orjson.JSONDecodeError:
            pass
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
                "The upstream provider timed out.", status=504, retryable=True, kind="upstream_timeout"
            )
        return ProviderError(
            f"The upstream provider failed (HTTP {status}).",
            status=502,
            retryable=status >= 500,
            kind="upstream_error",
        )
