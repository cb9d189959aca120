"""Per-tenant body logging: the request and response bodies of a tenant's calls, kept for debugging.

Off unless the tenant turns it on (Tenant.body_logging, in KeyInfo so the request path needs no
query). For such a tenant each call's bodies are:

- cut at TOLLHOUSE_BODY_LOG_MAX_BYTES each (a stream: the bytes relayed to the client, up to that),
  with a flag saying so;
- queued in this process (`capture` never waits and never raises: a body log must not slow or fail
  the call) and written in batches, once a second, by a background task through the database
  boundary; obvious secrets are redacted there, off the event loop (`redact`);
- deleted after TOLLHOUSE_BODY_LOG_RETENTION_DAYS by the `body-logs-purge` beat task (or, with no
  beat, as in the embedded default, by the writer itself once an hour).

The queue is bounded in bytes: when the database is slower than the calls, further bodies are
dropped and counted (one warning per flush), since a body log is a diagnostic and not the ledger.
Nothing of a body ever reaches a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.http import HttpResponseBase, StreamingHttpResponse

from gateway.auth import KeyInfo
from gateway.db import run_db

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
MAX_PENDING_BYTES = 32 * 1024 * 1024  # bodies waiting for the database, all tenants together
FLUSH_SECONDS = 1.0
PURGE_SECONDS = 3600.0  # when no beat runs the purge task
PURGE_CHUNK = 10_000
_TAIL = 256  # a truncated body loses its last partial word, up to this many characters

# What a secret looks like in a body. Each match is replaced by REDACTED; a `name: value` pair
# keeps its name (group 1) so the row still says which field it was.
_SECRET_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"  # a JWT
    r"|\bth-[A-Za-z0-9]{8,}"  # a Tollhouse key (th- + prefix + secret), or most of one
    r"|\b(?:sk|gsk|xai|pk|rk)[-_][A-Za-z0-9_\-]{8,}"  # OpenAI (sk-, sk-proj-, sk-ant-), Groq, xAI, ...
    r"|\bAIza[0-9A-Za-z_\-]{20,}"  # Google
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"  # GitHub
    r"|\bxox[abprs]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # an AWS access key id
)
_BEARER = re.compile(r"(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]+", re.IGNORECASE)
_NAMED = re.compile(
    r"(\b(?:api[_\-]?key|apikey|x[_\-]api[_\-]key|access[_\-]?token|refresh[_\-]?token|id[_\-]?token"
    r"|auth[_\-]?token|token|secret|client[_\-]?secret|aws[_\-]?secret[_\-]?access[_\-]?key"
    r"|password|passwd|pwd|authorization|credentials?|private[_\-]?key)"
    r"\\?[\"']?\s*[:=]\s*)"
    r"(\\?\"(?:[^\"\\]|\\.)*?\\?\"|'[^']*'|[^\s,;&}\]\"']+)",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s:/@\"'<>]*:)[^\s@/\"'<>]+(@)", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with obvious secrets replaced: known key shapes, JWTs, bearer/basic credentials,
    `"api_key": "..."`-style fields (JSON, form or header syntax) and passwords in URLs. NUL (which
    PostgreSQL cannot store) becomes U+FFFD."""
    text = text.replace("\x00", "\ufffd")
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _NAMED.sub(lambda m: m.group(1) + _quoted_like(m.group(2)), text)
    return _SECRET_SHAPES.sub(REDACTED, text)


def _quoted_like(value: str) -> str:
    if value.startswith('\\"'):
        return f'\\"{REDACTED}\\"'
    if value[:1] in {'"', "'"}:
        return value[0] + REDACTED + value[0]
    return REDACTED


def body_text(data: bytes, *, truncated: bool) -> str:
    """Bytes as stored text: UTF-8 (anything else replaced), and, when the bytes were cut, without
    their last partial word, so that a secret cut in two leaves no recognisable half behind."""
    text = data.decode("utf-8", "replace")
    if truncated:
        tail = text[-_TAIL:]
        cut = max(tail.rfind(separator) for separator in (" ", "\n", '"', ",", "\t"))
        text = text[: len(text) - len(tail) + cut + 1] if cut >= 0 else text[: len(text) - len(tail)]
    return redact(text)


@dataclass(frozen=True)
class Entry:
    request_id: str
    tenant_id: int
    api_key_id: int | None
    endpoint: str
    status: int
    request_body: bytes
    request_truncated: bool
    response_body: bytes
    response_truncated: bool
    created_at: datetime

    @property
    def size(self) -> int:
        return len(self.request_body) + len(self.response_body)


def _capped(data: Any) -> tuple[bytes, bool]:
    limit = settings.TOLLHOUSE_BODY_LOG_MAX_BYTES
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    elif isinstance(data, bytearray | memoryview):
        data = bytes(data)
    elif not isinstance(data, bytes):
        return b"", False
    return data[:limit], len(data) > limit


def _write(entries: list[Entry]) -> int:
    """Runs in the database thread: redact, then insert (rows of tenants deleted meanwhile are skipped)."""
    from accounts.models import Tenant
    from gateway.models import BodyLog

    tenants = set(
        Tenant.objects.filter(id__in={entry.tenant_id for entry in entries}).values_list("id", flat=True)
    )
    rows = [
        BodyLog(
            request_id=entry.request_id[:64],
            tenant_id=entry.tenant_id,
            api_key_id=entry.api_key_id,
            endpoint=entry.endpoint[:40],
            status=entry.status,
            request_body=body_text(entry.request_body, truncated=entry.request_truncated),
            request_truncated=entry.request_truncated,
            response_body=body_text(entry.response_body, truncated=entry.response_truncated),
            response_truncated=entry.response_truncated,
            created_at=entry.created_at,
        )
        for entry in entries
        if entry.tenant_id in tenants
    ]
    BodyLog.objects.bulk_create(rows, batch_size=200)
    return len(rows)


def purge(*, now: datetime | None = None) -> int:
    """Delete body logs older than TOLLHOUSE_BODY_LOG_RETENTION_DAYS, in chunks; returns how many."""
    from gateway.models import BodyLog

    cutoff = (now or datetime.now(tz=UTC)) - timedelta(days=settings.TOLLHOUSE_BODY_LOG_RETENTION_DAYS)
    deleted = 0
    while True:
        ids = list(BodyLog.objects.filter(created_at__lt=cutoff).values_list("id", flat=True)[:PURGE_CHUNK])
        if not ids:
            return deleted
        deleted += BodyLog.objects.filter(id__in=ids).delete()[0]


class BodyLogWriter:
    """The queue between `capture` and the database, and the task that empties it (started on the
    first capture in a running event loop, again if that loop is gone)."""

    def __init__(self, *, max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.pending: deque[Entry] = deque()
        self.pending_bytes = 0
        self.max_pending_bytes = max_pending_bytes
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_purge = time.monotonic()

    def add(self, entry: Entry) -> None:
        if self.pending_bytes + entry.size > self.max_pending_bytes:
            self.dropped += 1
            return
        self.pending.append(entry)
        self.pending_bytes += entry.size
        self._ensure_running()

    def _ensure_running(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the next flush takes it
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._task = loop.create_task(self._run(), name="body-log-writer")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
            if settings.CELERY_TASK_ALWAYS_EAGER and time.monotonic() - self._last_purge > PURGE_SECONDS:
                self._last_purge = time.monotonic()
                await self._purge()

    async def _purge(self) -> None:
        try:
            await run_db(purge)
        except Exception:
            logger.exception("body logs: purging old rows failed; trying again in an hour")

    async def flush(self) -> int:
        """Write everything queued. A database failure loses this batch (logged), never a call."""
        if self.dropped:
            logger.warning(
                "body logs: %d calls' bodies dropped (more than %d bytes waiting for the database)",
                self.dropped,
                self.max_pending_bytes,
            )
            self.dropped = 0
        if not self.pending:
            return 0
        batch = list(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        try:
            return await asyncio.shield(run_db(lambda: _write(batch)))
        except Exception as exc:
            logger.error("body logs: %d calls' bodies not written (%s)", len(batch), type(exc).__name__)
            return 0

    async def stop(self) -> None:
        if self._task is not None and self._loop is asyncio.get_running_loop():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        await self.flush()


writer = BodyLogWriter()


def capture(
    *,
    key: KeyInfo | None,
    request_id: str,
    endpoint: str,
    status: int,
    request_body: bytes,
    response_body: bytes,
    response_truncated: bool = False,
) -> None:
    """Queue one call's bodies if its tenant logs bodies; otherwise (and always cheaply) nothing."""
    if key is None or not key.body_logging:
        return
    request, request_cut = _capped(request_body)
    response, response_cut = _capped(response_body)
    writer.add(
        Entry(
            request_id=request_id,
            tenant_id=key.tenant_id,
            api_key_id=key.id,
            endpoint=endpoint,
            status=status,
            request_body=request,
            request_truncated=request_cut,
            response_body=response,
            response_truncated=response_cut or response_truncated,
            created_at=datetime.now(tz=UTC),
        )
    )


R = TypeVar("R", bound=HttpResponseBase)


def capture_response(
    *, key: KeyInfo | None, request_id: str, endpoint: str, request_body: bytes, response: R
) -> R:
    """`capture` for a finished response, returned as it is. A stream is captured as it is relayed:
    its content is read through a tap that keeps the first TOLLHOUSE_BODY_LOG_MAX_BYTES and queues
    them when the stream ends (completed, broken or cancelled)."""
    if key is None or not key.body_logging:
        return response
    if isinstance(response, StreamingHttpResponse):
        response.streaming_content = _tap(
            response.streaming_content,
            key=key,
            request_id=request_id,
            endpoint=endpoint,
            status=response.status_code,
            request_body=request_body,
        )
        return response
    capture(
        key=key,
        request_id=request_id,
        endpoint=endpoint,
        status=response.status_code,
        request_body=request_body,
        response_body=getattr(response, "content", b""),
    )
    return response


def _keep(kept: bytearray, chunk: bytes, limit: int) -> bool:
    """Add what fits of `chunk` to `kept`; True if some of it did not fit."""
    room = limit - len(kept)
    kept += chunk[:room]
    return len(chunk) > room


async def _tap(
    content: Iterable[Any] | AsyncIterator[Any],
    *,
    key: KeyInfo,
    request_id: str,
    endpoint: str,
    status: int,
    request_body: bytes,
) -> AsyncIterator[Any]:
    limit = settings.TOLLHOUSE_BODY_LOG_MAX_BYTES
    kept = bytearray()
    cut = False
    try:
        if hasattr(content, "__aiter__"):
            async for chunk in content:
                cut = cut or _keep(kept, chunk, limit)
                yield chunk
        else:
            for chunk in content:
                cut = cut or _keep(kept, chunk, limit)
                yield chunk
    finally:
        close = getattr(content, "aclose", None)
        if close is not None:
            await close()
        capture(
            key=key,
            request_id=request_id,
            endpoint=endpoint,
            status=status,
            request_body=request_body,
            response_body=bytes(kept),
            response_truncated=cut,
        )
