"""The operator's "test connection": one cheap call to a provider, off the hot path.

One request of at most one output token to an upstream model, built by the provider's own adapter
(gateway/providers/) as a real call would be, sent with httpx (blocking: this runs in a console or
API request, never in the gateway's event loop) within the provider's own timeouts, capped so that
a page answers in reasonable time. What comes back (the upstream's status and answer, or why it
failed) has the provider's credential cut out wherever it appears, as every upstream text the
gateway passes on does (`redact`, `redact_credential`); the log line names the provider, the model
and the status only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import httpx

from config.crypto import CredentialError
from gateway import canonical
from gateway.catalog import DeploymentInfo, ProviderInfo
from gateway.models import Provider
from gateway.providers import ProviderError, adapter_for
from gateway.providers.base import redact, redact_credential

logger = logging.getLogger(__name__)

DEFAULT_PROMPT = "Reply with the word OK."
# A console page waits at most this long, whatever the provider's own timeouts allow.
MAX_WAIT_SECONDS = 30.0
ANSWER_CHARS = 600


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    model: str
    status: int  # the upstream's HTTP status; 0 when it never answered
    elapsed_ms: int
    summary: str  # one sentence for people, safe to show
    answer: str  # the upstream's body (or the model's text), redacted and cut at ANSWER_CHARS


def _info(provider: Provider, credential: str, model: str) -> DeploymentInfo:
    return DeploymentInfo(
        id=0,
        provider=ProviderInfo(
            id=provider.pk or 0,
            name=provider.name,
            kind=provider.kind,
            base_url=provider.base_url.rstrip("/"),
            credential=credential,
            connect_timeout=float(provider.connect_timeout),
            read_timeout=float(provider.read_timeout),
            first_byte_timeout=float(provider.first_byte_timeout),
            total_timeout=float(provider.total_timeout),
        ),
        upstream_model=model,
        priority=0,
        weight=1,
    )


def _clip(text: str) -> str:
    return text if len(text) <= ANSWER_CHARS else text[:ANSWER_CHARS] + "…"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's "\ud800" decodes
        return False
    return True


def provider_test(*, provider: Provider, model: str, prompt: str = DEFAULT_PROMPT) -> ConnectionResult:
    """Ask `model` of `provider` for one token of an answer to `prompt`; never raises for what the
    upstream (or the network) does."""
    started = time.monotonic()

    def result(ok: bool, status: int, summary: str, answer: str = "") -> ConnectionResult:
        elapsed = int((time.monotonic() - started) * 1000)
        logger.info(
            "provider connection test: provider=%s model=%s ok=%s status=%s elapsed_ms=%s",
            provider.name,
            model[:200],
            ok,
            status,
            elapsed,
        )
        return ConnectionResult(ok, model, status, elapsed, summary, _clip(answer))

    if not _encodable(model) or not _encodable(prompt):
        return result(False, 0, "The model id and the prompt must be text (UTF-8).")
    adapter = adapter_for(provider.kind)
    if adapter is None:
        return result(False, 0, f"No adapter for the provider kind {provider.kind!r}.")
    try:
        credential = provider.get_credential()
    except CredentialError:
        return result(False, 0, "The stored credential cannot be decrypted with this encryption key.")
    deployment = _info(provider, credential, model)
    request = canonical.Request(
        model=model,
        messages=[canonical.Message(role=canonical.Role.USER, content=[canonical.TextPart(prompt)])],
        max_output_tokens=1,
    )
    try:
        upstream = adapter.build_request(deployment=deployment, request=request, request_id="connection-test")
    except ProviderError as exc:
        return result(False, 0, exc.message)
    info = deployment.provider
    wait = min(info.first_byte_timeout, info.total_timeout, MAX_WAIT_SECONDS)
    timeout = httpx.Timeout(
        wait, connect=min(info.connect_timeout, wait), pool=min(info.connect_timeout, wait)
    )
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(upstream.url, content=upstream.content, headers=upstream.headers)
    except httpx.TimeoutException:
        return result(False, 0, f"The upstream did not answer within {wait:g} s.")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: a model id no URL can hold
        reason = redact(f"{type(exc).__name__}: {exc}", credential=credential)
        return result(False, 0, f"Could not reach the upstream ({reason}).")
    body = redact_credential(response.content, credential).decode("utf-8", "replace")
    if response.status_code >= 400:
        error = adapter.error(
            status=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            content=response.content,
            credential=credential,
        )
        return result(False, response.status_code, error.message, redact(body, credential=credential))
    try:
        parsed = adapter.parse_response(content=response.content)
    except ProviderError as exc:
        return result(False, response.status_code, exc.message, redact(body, credential=credential))
    text = redact(parsed.text, credential=credential) if parsed.text else ""
    said = f": {text!r}" if text else "."
    return result(
        True, response.status_code, f"The upstream answered with {parsed.model or model}{said}", body
    )
