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

import re
from dataclasses import dataclass, fields
from typing import Any, TypedDict

# Version 2 (issue 14) added ingress, upstream_format, session, attempt_log, cache_write_tokens and
# reasoning_tokens. A version 1 event (an older gateway during a rolling upgrade) has none of them:
# the reader gives each its default, and `ingress` the dialect its endpoint implies.
# Version 3 (issue 16) added route_strategy (a version 2 event reads it as "") and saved_cost_nanos:
# what a response-cache hit would have cost (0 in a version 2 event).
VERSION = 3

# The client dialects (gateway codecs) and the upstream wire formats (gateway adapters), as stored.
INGRESS_DIALECTS = ("openai_chat", "openai_embeddings", "openai_responses", "anthropic_messages")
UPSTREAM_FORMATS = ("openai", "anthropic", "gemini", "openai_responses", "mock")
# What a version 1 event's endpoint says about its dialect (version 1 knew only OpenAI's).
INGRESS_OF_ENDPOINT = {
    "chat.completions": "openai_chat",
    "embeddings": "openai_embeddings",
    "responses": "openai_responses",
    "messages": "anthropic_messages",
}
SESSION_MAX = 128  # characters of an agent session id kept (the reader cuts longer ones)
# Control characters (C0, DEL, C1) and lone surrogates: never part of a session id we store.
_NOT_IN_SESSION = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
ATTEMPT_LOG_MAX = 16  # attempts kept in a row's attempt log: the first ones and the last ones


def session_clean(value: str) -> str:
    """An agent session id as stored: without control characters or spaces at its ends, at most
    SESSION_MAX characters. The gateway applies it to the header, the usage writer again."""
    return _NOT_IN_SESSION.sub("", value).strip()[:SESSION_MAX].rstrip()


class Attempt(TypedDict):
    """One try of an upstream by the executor: which deployment, what it answered, how long it took
    (status 0: no HTTP answer at all, as on a connect error or a timeout)."""

    deployment_id: int | None
    status: int
    duration_us: int
    error_type: str


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
    # Version 2. The client's dialect (INGRESS_DIALECTS) and the adapter that spoke to the upstream
    # (UPSTREAM_FORMATS, "" when no upstream was reached).
    ingress: str = "openai_chat"
    upstream_format: str = ""
    session: str = ""  # the agent session the client named (X-Claude-Code-Session-Id, ...), or ""
    # Every upstream attempt, in order (at most ATTEMPT_LOG_MAX of them are stored).
    attempt_log: tuple[Attempt, ...] = ()
    # Input tokens written to the provider's prompt cache: part of `prompt_tokens`, like
    # `cached_tokens` (read from the cache), and priced at the cache-write rate.
    cache_write_tokens: int = 0
    # Reasoning / thinking tokens: informational, already counted (and billed) in completion_tokens.
    reasoning_tokens: int = 0
    # Version 3. The routing strategy of the route the client asked for (ModelRoute.Strategy:
    # priority, least_latency, least_busy, cheapest) that chose `deployment_id`; "" before routing.
    route_strategy: str = ""
    # Version 3. A response-cache hit (`cache_hit`) costs nothing; this is what the answer it
    # replayed would cost now (the stored answer's tokens at its model's price in force): 0 otherwise.
    saved_cost_nanos: int = 0
    v: int = VERSION

    def wire(self) -> dict[str, Any]:
        """The event as the flat dict the sinks carry (orjson also serialises the instance itself)."""
        return {name: getattr(self, name) for name in FIELD_NAMES}


FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in fields(UsageEvent))
