"""One call through the gateway: who made it, what it asked, what it cost, how long it took.

A `Call` collects the facts of the request path as they become known and, at step 8, turns
them into exactly one usage event. `settle()` is idempotent so no path can bill a call twice.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from django.http import HttpRequest

from billing.events import STREAM_BROKEN, Attempt, UsageEvent
from billing.pricing import cost_nanos
from billing.usage import RedisStreamSink, UsageSink
from config import clientip
from gateway import errors, metrics
from gateway.auth import KeyInfo
from gateway.calllog import call_logged, set_request_id
from gateway.catalog import Catalog, DeploymentInfo
from gateway.governor import Ticket
from gateway.providers import ProviderError, Usage
from gateway.runtime import runtime

if TYPE_CHECKING:
    from gateway.cache import Recorder

logger = logging.getLogger(__name__)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
CLIENT_CLOSED = 499  # nginx's code for "the client went away before the answer was complete"


def estimate_tokens(text_length: int) -> int:
    """A rough token count (4 characters a token) for when an upstream never reported usage."""
    return (text_length + 3) // 4


class Call:
    def __init__(self, request: HttpRequest, *, endpoint: str, ingress: str) -> None:
        self.started_ns = time.perf_counter_ns()
        self.started_at = datetime.now(tz=UTC)
        self.endpoint = endpoint
        self.ingress = ingress  # the client's dialect
        self.upstream_format = ""  # the adapter that answered (or was tried last)
        self.session = ""
        self.attempt_log: list[Attempt] = []
        self.request_id = uuid.uuid4().hex
        set_request_id(self.request_id)  # on every log line this call causes
        incoming = request.headers.get("x-request-id", "")
        self.client_request_id = incoming if _SANE_REQUEST_ID.match(incoming) else ""
        self.client_ip = clientip.from_meta(request.META)
        self.key: KeyInfo | None = None
        self.catalog: Catalog | None = None
        self.requested_model = ""
        self.end_user = ""
        self.deployment: DeploymentInfo | None = None
        self.candidates: list[DeploymentInfo] | None = None  # in the order admission left them
        self.route_strategy = ""  # the strategy that ordered them (ModelRoute.Strategy)
        self.ticket: Ticket | None = None  # what admission took (rate limits, reservations)
        self.served_model = ""
        self.usage = Usage()
        self.prompt_chars = 0
        self.status = 200
        self.error_type = ""
        self.streamed = False
        self.attempts = 0
        self.upstream_ns: int | None = None
        self.ttft_ns: int | None = None
        self.limit = ""  # which limit refused the call (a metrics label), if one did
        self.refused_by_budget: int | None = None  # the Budget row that refused it (402), if one did
        self.ledger = True  # False: a call that costs nothing and leaves no usage row (count_tokens)
        # The response cache (gateway/cache.py): hit / miss / bypass for the answer's header ("": not
        # used), a hit's saved cost, and a miss's recorder of the answer to store.
        self.cache_status = ""
        self.cache_hit = False
        self.saved_nanos = 0
        self.cache_recorder: Recorder | None = None
        self._settled = False
        # What the lean handler awaits once the answer has left (gateway/asgi.py; None: another
        # handler serves this call, which settles before answering).
        self.after_response: list[Coroutine[Any, Any, None]] | None = getattr(request, "after_response", None)

    @property
    def public_request_id(self) -> str:
        """What X-Request-ID says back: the client's own id if it sent a sane one, else ours."""
        return self.client_request_id or self.request_id

    def fail(self, error: errors.GatewayError | ProviderError) -> None:
        self.status = error.status
        self.error_type = error.kind if isinstance(error, ProviderError) else (error.code or error.type)
        self.limit = metrics.refusal_limit(error)
        self.refused_by_budget = error.budget_id if isinstance(error, errors.BudgetExceeded) else None

    def stream_broke(self) -> None:
        """The stream failed after it had begun: the client has its HTTP 200, then an error event.
        The status stays the 200 the client saw; the error type says the stream broke (and the
        upstream error metric why)."""
        self.error_type = STREAM_BROKEN

    def attempted(
        self, *, deployment_id: int | None, status: int, started_ns: int, error_type: str = ""
    ) -> None:
        """One try of an upstream, as the usage row's attempt log keeps it (status 0: no answer)."""
        duration_ns = time.perf_counter_ns() - started_ns
        self.upstream_ns = (self.upstream_ns or 0) + duration_ns
        self.attempt_log.append(
            Attempt(
                deployment_id=deployment_id,
                status=status,
                duration_us=duration_ns // 1000,
                error_type=error_type,
            )
        )

    def first_byte(self) -> None:
        if self.ttft_ns is None:
            self.ttft_ns = time.perf_counter_ns() - self.started_ns

    def cost_nanos(self) -> int:
        if self.deployment is None or self.catalog is None:
            return 0
        usage = self.usage
        if not (usage.prompt_tokens or usage.completion_tokens):
            return 0
        price = self.catalog.price(self.deployment.upstream_model, self.started_at)
        if price is None:
            logger.warning(
                "no price for model %s: call %s recorded at zero cost",
                self.deployment.upstream_model,
                self.request_id,
            )
            return 0
        return cost_nanos(
            price=price,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            completion_tokens=usage.completion_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        )

    def event(self) -> UsageEvent:
        latency_ns = time.perf_counter_ns() - self.started_ns
        upstream_ns = self.upstream_ns
        return UsageEvent(
            request_id=self.request_id,
            client_request_id=self.client_request_id,
            created_at_us=int(self.started_at.timestamp() * 1_000_000),
            tenant_id=self.key.tenant_id if self.key else None,
            api_key_id=self.key.id if self.key else None,
            end_user=self.end_user,
            endpoint=self.endpoint,
            requested_model=self.requested_model,
            served_model=self.served_model or (self.deployment.upstream_model if self.deployment else ""),
            provider=self.deployment.provider.name if self.deployment else "",
            deployment_id=self.deployment.id if self.deployment else None,
            prompt_tokens=self.usage.prompt_tokens,
            cached_tokens=self.usage.cached_tokens,
            completion_tokens=self.usage.completion_tokens,
            usage_estimated=self.usage.estimated,
            cost_nanos=self.cost_nanos(),
            status=self.status,
            error_type=self.error_type,
            streamed=self.streamed,
            cache_hit=self.cache_hit,
            attempts=self.attempts,
            latency_us=latency_ns // 1000,
            ttft_us=self.ttft_ns // 1000 if self.ttft_ns is not None else None,
            upstream_latency_us=upstream_ns // 1000 if upstream_ns is not None else None,
            overhead_us=(latency_ns - (upstream_ns or 0)) // 1000,
            client_ip=self.client_ip,
            # A prepaid tenant's call: the drain charges its cost to the credit ledger.
            credits=bool(self.key and self.key.prepaid),
            refused_by_budget=self.refused_by_budget,
            ingress=self.ingress,
            upstream_format=self.upstream_format,
            session=self.session,
            attempt_log=tuple(self.attempt_log),
            cache_write_tokens=self.usage.cache_write_tokens,
            reasoning_tokens=self.usage.reasoning_tokens,
            route_strategy=self.route_strategy,
            saved_cost_nanos=self.saved_nanos,
        )

    async def settle(self) -> None:
        """Step 8: give back what admission took, count what the call really used, and emit the
        call's one usage event — with Redis, in one round trip that does all three atomically.

        A call refused before any key was identified leaves no usage row: strangers must not be
        able to write the ledger. Those are counted per client IP by gateway.strangers instead.
        """
        if self._settled:
            return
        self._settled = True
        if self.key is None:
            metrics.call_unidentified(endpoint=self.endpoint, status=self.status)
            return
        if not self.ledger:
            return
        event = self.event()
        wire = event.wire()
        self._record(wire)
        sink = await runtime.sink()
        if self.ticket is not None:
            usage = self.usage
            emitted = await runtime.governor.settle(
                self.ticket,
                tokens=max(usage.prompt_tokens, 0) + max(usage.completion_tokens, 0),
                cost=event.cost_nanos,
                deployment=self.deployment.id if self.deployment else None,
                event=_payload(event, sink),
            )
            if emitted:
                return
        await sink.emit(wire)

    async def settle_soon(self) -> None:
        """Settle with the answer (a JSON answer or a cache hit): the settlement (or, for a call
        nothing governs, its usage event) is queued to Redis now and written before the answer
        leaves (the lean handler yields once first, gateway/asgi.py), and its reply awaited after the
        answer has left, by that handler (a stream settles after its last chunk too). The client no
        longer waits a Redis round trip for it, and its next call is still admitted against it.
        Settled here, whole, where that cannot be done."""
        after = self.after_response
        if after is not None and not self._settled and self.key is not None and self.ledger:
            rest = self._settle_sent()
            if rest is not None:
                after.append(rest)
                return
        await self.settle()

    def _settle_sent(self) -> Coroutine[Any, Any, None] | None:
        sink = runtime.started_sink()
        if sink is None:
            return None
        event = self.event()
        wire = event.wire()
        rest: Coroutine[Any, Any, None] | None
        if self.ticket is None:
            rest = sink.emit_sent(wire) if isinstance(sink, RedisStreamSink) else None
        else:
            usage = self.usage
            reply = runtime.governor.settle_sent(
                self.ticket,
                tokens=max(usage.prompt_tokens, 0) + max(usage.completion_tokens, 0),
                cost=event.cost_nanos,
                deployment=self.deployment.id if self.deployment else None,
                event=_payload(event, sink),
            )
            rest = None if reply is None else _emit_unless(reply, sink, wire)
        if rest is None:
            return None
        self._settled = True
        self._record(wire)
        return rest

    def _record(self, wire: dict[str, Any]) -> None:
        """The call's usage event, counted in the metrics and written to the call log."""
        assert self.key is not None
        metrics.call_settled(wire, plan=self.key.plan, limit=self.limit, defer=True)
        call_logged(wire, key_prefix=self.key.prefix, tenant=self.key.tenant_slug or str(self.key.tenant_id))


async def _emit_unless(reply: Coroutine[Any, Any, bool], sink: UsageSink, wire: dict[str, Any]) -> None:
    if not await reply:  # Redis did not append the usage event: the sink keeps it
        await sink.emit(wire)


def _payload(event: UsageEvent, sink: UsageSink) -> bytes | None:
    """The usage event for Redis to append in the settlement step, when the sink is Redis's stream
    and it is up; None: the sink stores it after settlement."""
    if not isinstance(sink, RedisStreamSink) or sink.down:
        return None
    try:
        return orjson.dumps(event)  # the dataclass, natively
    except orjson.JSONEncodeError:
        return None  # the sink stores it sanitised
