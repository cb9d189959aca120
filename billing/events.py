"""The usage event: the one definition the gateway writes and the usage writer reads.

A call through the gateway ends in exactly one `UsageEvent` (`gateway.calls.Call.event`). It
travels as a flat JSON object (the Redis stream, or the in-process buffer) to
`billing.services.usage_row_from_event`, which reads it field by field, by the names declared
here. Both sides are checked against this class: the writer's readers must cover exactly its
fields (`billing.services` asserts it at import, and a test asserts every field reaches a column
or a consumer), so a field added on one side cannot be dropped silently on the other.

`v` is the definition's version. Bump it when a field changes meaning; a reader meeting a newer
version or fields it does not know stores what it knows and says once, by name, what it ignored
(a rolling upgrade where gateways run ahead of the workers must not stop the ledger).

Money is integer nano-dollars, durations integer microseconds, times microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

VERSION = 1

# The error type of a call whose stream broke after it had begun: the client had its HTTP 200 (and
# maybe some events) and then an error event. The status stays the 200 the client saw; the rollups
# count the call as an error all the same (billing/rollups.py).
STREAM_BROKEN = "upstream_stream_broken"


@dataclass(frozen=True, slots=True)
class UsageEvent:
    request_id: str  # the gateway's own id: the idempotency key of the pipeline
    client_request_id: str  # what the client sent in X-Request-ID, if sane ("" otherwise)
    created_at_us: int
    tenant_id: int | None
    api_key_id: int | None  # None: an end-user token call (no key row)
    end_user: str
    endpoint: str
    requested_model: str
    served_model: str
    provider: str
    deployment_id: int | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    usage_estimated: bool
    cost_nanos: int
    status: int
    error_type: str
    streamed: bool
    cache_hit: bool
    attempts: int
    latency_us: int
    ttft_us: int | None
    upstream_latency_us: int | None
    overhead_us: int
    client_ip: str | None
    credits: bool  # the call ran on prepaid credits: its cost is charged to the credit ledger
    # The tenant's hard Budget (row id) that refused the call with 402 budget_exceeded; None
    # otherwise (and for a plan's monthly budget, which has no row). Its first refusal in a period
    # sends the budget's 100 % alert (billing/alerts.py).
    refused_by_budget: int | None = None
    v: int = VERSION

    def wire(self) -> dict[str, Any]:
        """The event as the flat dict the sinks carry (orjson also serialises the instance itself)."""
        return {name: getattr(self, name) for name in FIELD_NAMES}


FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in fields(UsageEvent))
