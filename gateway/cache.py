"""The response cache (DESIGN.md §5): an exact match on the normalized request, per tenant.

Who uses it: a key that opted in (`ApiKey.cache`), or a call that says `x-tollhouse-cache: on`;
`x-tollhouse-cache: off` keeps a call out even when its key opted in. `x-tollhouse-cache-ttl:
<seconds>` sets how long the answer of a miss is kept (1 to TOLLHOUSE_CACHE_MAX_TTL_SECONDS; the
key's `cache_ttl`, else TOLLHOUSE_CACHE_TTL_SECONDS). A bad value of either header is the dialect's
400. The response says `x-tollhouse-cache: hit`, `miss`, or `bypass` (opted in, but the request
asks for something the canonical answer cannot carry, see `_CANONICAL_FIELDS`).

The key is a SHA-256 over canonical JSON of: the tenant, the model route the name resolves to,
and the canonical request (gateway/canonical.py) without what does not shape the answer (the
stream flag, the end user, the agent session). So the same question asked in chat completions,
Anthropic messages or Responses finds the same entry, and every sampling parameter (temperature,
top_p, max tokens, stop, seed, tools, response format, reasoning, ...) is part of it. The tenant is
both in the hash and in the Redis key's name: two tenants never share an entry.

What is stored is the canonical ANSWER, as stream events (a JSON answer is stored as the events it
adds up to), with the model that served it and the model its price is read from. Never the client's
bytes, a header or a credential (events come from the adapters' parsers, which cut the provider's
credential out first). A hit is rendered in the asking client's dialect: JSON, or the events
replayed one chunk each. Only complete, successful answers are stored: an error, a stream that broke
or was cut, a client that left, an answer lowered by a budget cap, or one whose finish reason is an
error or a content filter never is; nor is an entry above TOLLHOUSE_CACHE_MAX_BYTES.

A hit costs nothing and reaches no upstream: its usage row has `cache_hit` true, cost 0 and
`saved_cost` the price of the stored answer's tokens now. It counts as a request against the rpm
(and concurrency) limits, since it is one, but not against tpm, budgets or credits.

Where entries live: Redis (`SET ... PX`, one GET per lookup) when REDIS_URL is set; otherwise this
process, the last TOLLHOUSE_CACHE_LOCAL_ENTRIES answers. A Redis that fails makes every lookup a miss
(logged once each way); the call itself goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import redis
from django.http import HttpResponse, StreamingHttpResponse

from billing.pricing import cost_nanos
from config import resp
from config.hot import hot
from config.redis import async_client, redis_key
from gateway import canonical, errors, governor, metrics
from gateway.auth import Limits
from gateway.dialects.base import Codec, Inbound

if TYPE_CHECKING:
    from gateway.calls import Call
    from gateway.catalog import RouteInfo

logger = logging.getLogger(__name__)

HEADER = "x-tollhouse-cache"
TTL_HEADER = "x-tollhouse-cache-ttl"
HIT, MISS, BYPASS = "hit", "miss", "bypass"
ENTRY_VERSION = 1

# Per dialect, the body fields the canonical request carries (or that do not shape the answer:
# stream options, the end user, metadata). A request with any other field (chat's `n`, `logprobs`,
# `audio`, Responses' `previous_response_id`, ...) asks for something a canonical answer cannot
# carry, or that depends on state outside the request: it is answered, but never from or into the
# cache.
_CANONICAL_FIELDS: dict[str, frozenset[str]] = {
    "openai_chat": frozenset(
        {
            "model",
            "messages",
            "stream",
            "stream_options",
            "user",
            "metadata",
            "store",
            "temperature",
            "top_p",
            "max_tokens",
            "max_completion_tokens",
            "stop",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "tools",
            "tool_choice",
            "parallel_tool_calls",
            "response_format",
            "reasoning_effort",
            "n",  # 1 only: see `cacheable`
        }
    ),
    "anthropic_messages": frozenset(
        {
            "model",
            "messages",
            "system",
            "max_tokens",
            "metadata",
            "stop_sequences",
            "stream",
            "temperature",
            "thinking",
            "tool_choice",
            "tools",
            "top_k",
            "top_p",
        }
    ),
    "openai_responses": frozenset(
        {
            "model",
            "input",
            "instructions",
            "max_output_tokens",
            "metadata",
            "parallel_tool_calls",
            "reasoning",
            "store",
            "stream",
            "temperature",
            "text",
            "tool_choice",
            "tools",
            "top_p",
            "user",
        }
    ),
}
# Answers worth keeping: the model ended its turn, called tools, or reached the output limit the
# request (which is part of the key) asked for.
_STORABLE = frozenset(
    {canonical.FinishReason.STOP, canonical.FinishReason.TOOL_CALLS, canonical.FinishReason.LENGTH}
)


# -- what a call asks of the cache ------------------------------------------------------------------


@dataclass(frozen=True)
class Wish:
    """What the headers said: on / off / not said (None), and a TTL if one was given."""

    on: bool | None
    ttl: int | None


def read_headers(headers: Mapping[str, str]) -> Wish:
    """The call's cache headers; a bad value is a 400 naming the header."""
    raw = headers.get(HEADER)
    on: bool | None = None
    if raw is not None:
        value = raw.strip().lower()
        if value not in ("on", "off"):
            raise errors.BadRequest(
                f"{HEADER} must be 'on' or 'off'.", param=HEADER, code="invalid_cache_header"
            )
        on = value == "on"
    ttl: int | None = None
    raw_ttl = headers.get(TTL_HEADER)
    if raw_ttl is not None:
        text = raw_ttl.strip()
        most = hot.TOLLHOUSE_CACHE_MAX_TTL_SECONDS
        if not (text.isascii() and text.isdigit() and len(text) <= 12 and 1 <= int(text) <= most):
            raise errors.BadRequest(
                f"{TTL_HEADER} must be a whole number of seconds from 1 to {most}.",
                param=TTL_HEADER,
                code="invalid_cache_ttl",
            )
        ttl = int(text)
    return Wish(on=on, ttl=ttl)


@dataclass(frozen=True)
class Policy:
    """A call that uses the cache: its entry's key and, for a miss, how long its answer is kept."""

    key: str
    ttl: int


def cacheable(inbound: Inbound) -> bool:
    fields = _CANONICAL_FIELDS.get(inbound.dialect)
    if fields is None or inbound.n != 1:
        return False
    return all(name in fields for name in inbound.body)


def _normal(request: canonical.Request) -> dict[str, Any]:
    doc = dataclasses.asdict(request)
    for name in ("model", "stream", "user", "session", "extra"):
        doc.pop(name, None)
    sampling = doc["sampling"]
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        if sampling[name] is not None:
            sampling[name] = float(sampling[name])  # 1 and 1.0 are the same temperature
    return doc


def entry_key(*, tenant_id: int, route: str, request: canonical.Request) -> str:
    document = {"v": ENTRY_VERSION, "tenant": tenant_id, "route": route, "request": _normal(request)}
    digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return redis_key("cache", str(tenant_id), digest)


def policy(call: Call, wish: Wish, inbound: Inbound, route: RouteInfo) -> Policy | None:
    """Whether the call uses the cache, and under which entry (None: it does not). Sets the answer's
    `x-tollhouse-cache` to bypass for an opted-in call the cache cannot serve."""
    key = call.key
    assert key is not None
    on = wish.on if wish.on is not None else key.cache
    if not on:
        return None
    if not cacheable(inbound):
        call.cache_status = BYPASS
        metrics.cache_looked_up(BYPASS)
        return None
    try:
        request = inbound.canonical()
    except errors.BadRequest:
        # What only a pass-through upstream can carry (a content part with no canonical form): such a
        # call is answered as ever, just not from or into the cache.
        call.cache_status = BYPASS
        metrics.cache_looked_up(BYPASS)
        return None
    ttl = wish.ttl or key.cache_ttl or hot.TOLLHOUSE_CACHE_TTL_SECONDS
    ttl = min(ttl, hot.TOLLHOUSE_CACHE_MAX_TTL_SECONDS)
    return Policy(key=entry_key(tenant_id=key.tenant_id, route=route.name, request=request), ttl=ttl)


# -- entries -------------------------------------------------------------------------------------------

_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        canonical.Start,
        canonical.TextDelta,
        canonical.ThinkingDelta,
        canonical.ReasoningDone,
        canonical.ToolCallStart,
        canonical.ToolCallDelta,
        canonical.UsageUpdate,
        canonical.Finish,
    )
}


@dataclass
class Entry:
    events: list[canonical.StreamEvent]
    served_model: str  # as the upstream named it
    priced_as: str  # the deployment's upstream model: its price says what a hit saves

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "v": ENTRY_VERSION,
                "served_model": self.served_model,
                "priced_as": self.priced_as,
                "events": [[type(event).__name__, event] for event in self.events],
            }
        )

    @classmethod
    def loads(cls, data: bytes) -> Entry | None:
        """The entry, or None for one this version cannot read (it is then a miss)."""
        try:
            document = orjson.loads(data)
            if document.get("v") != ENTRY_VERSION:
                return None
            events = [_event(name, fields) for name, fields in document["events"]]
            return cls(events=events, served_model=document["served_model"], priced_as=document["priced_as"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            logger.warning("an unreadable response-cache entry was ignored")
            return None

    def response(self) -> canonical.Response:
        return canonical.collect(self.events)


def _event(name: str, fields: dict[str, Any]) -> canonical.StreamEvent:
    cls = _EVENT_TYPES[name]
    if cls in (canonical.Start, canonical.UsageUpdate) and fields.get("usage") is not None:
        fields["usage"] = canonical.Usage(**fields["usage"])
    elif cls is canonical.ReasoningDone:
        fields["part"] = canonical.ReasoningPart(**fields["part"])
    elif cls is canonical.Finish:
        fields["reason"] = canonical.FinishReason(fields["reason"])
    event: canonical.StreamEvent = cls(**fields)
    return event


def events_of(response: canonical.Response) -> list[canonical.StreamEvent]:
    """The stream a JSON answer adds up to (canonical.collect's inverse), one event per part."""
    events: list[canonical.StreamEvent] = [canonical.Start(id=response.id, model=response.model)]
    index = 0
    for part in response.content:
        if isinstance(part, canonical.TextPart):
            events.append(canonical.TextDelta(part.text))
        elif isinstance(part, canonical.ThinkingPart):
            events.append(
                canonical.ThinkingDelta(
                    text=part.text, signature=part.signature, redacted=part.redacted, provider=part.provider
                )
            )
        elif isinstance(part, canonical.ReasoningPart):
            events.append(canonical.ReasoningDone(part))
        elif isinstance(part, canonical.ToolCallPart):
            events.append(
                canonical.ToolCallStart(
                    index=index, id=part.id, name=part.name, signature=part.signature, provider=part.provider
                )
            )
            events.append(canonical.ToolCallDelta(index=index, arguments=part.arguments))
            index += 1
    events.append(canonical.UsageUpdate(response.usage))
    events.append(canonical.Finish(response.finish_reason))
    return events


def complete(events: list[canonical.StreamEvent]) -> bool:
    """A whole, successful answer: no error, and a finish worth keeping at the end."""
    if not events or any(isinstance(event, canonical.StreamError) for event in events):
        return False
    finishes = [event for event in events if isinstance(event, canonical.Finish)]
    return len(finishes) == 1 and finishes[0].reason in _STORABLE


# -- stores -------------------------------------------------------------------------------------------


class LocalStore:
    """This process's entries (the embedded default): the most recently used ones, bounded."""

    name = "local"

    def __init__(self) -> None:
        self.entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        found = self.entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= time.monotonic():
            del self.entries[key]
            return None
        self.entries.move_to_end(key)
        return value

    async def put(self, key: str, value: bytes, ttl: int) -> None:
        self.entries[key] = (time.monotonic() + ttl, value)
        self.entries.move_to_end(key)
        while len(self.entries) > hot.TOLLHOUSE_CACHE_LOCAL_ENTRIES:
            self.entries.popitem(last=False)


class RedisStore:
    """Entries in Redis, shared by every gateway process; they expire by themselves (PX)."""

    name = "redis"

    def __init__(self) -> None:
        self.down = False

    async def _call(self, *parts: Any) -> Any:
        url = str(hot.REDIS_URL)
        if resp.supports(url):
            return await resp.loop_client(url, timeout=hot.TOLLHOUSE_REDIS_TIMEOUT).call(*parts)
        return await async_client().execute_command(*parts)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._call("GET", key)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self._call("SET", key, value, "PX", ttl * 1000)
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return
        self._recovered()

    def _failed(self, exc: Exception) -> None:
        if not self.down:
            self.down = True
            logger.warning("response cache: Redis failed (%s); every lookup is a miss", type(exc).__name__)

    def _recovered(self) -> None:
        if self.down:
            self.down = False
            logger.warning("response cache: Redis answers again")


class ResponseCache:
    def __init__(self) -> None:
        self._redis = RedisStore()
        self._local = LocalStore()

    @property
    def store(self) -> LocalStore | RedisStore:
        return self._redis if hot.REDIS_URL else self._local

    async def lookup(self, policy: Policy) -> Entry | None:
        data = await self.store.get(policy.key)
        entry = Entry.loads(data) if data is not None else None
        metrics.cache_looked_up(HIT if entry is not None else MISS)
        return entry

    async def put(self, policy: Policy, entry: Entry) -> bool:
        """Store `entry` for `policy.ttl` seconds, unless it is larger than TOLLHOUSE_CACHE_MAX_BYTES."""
        data = entry.dumps()
        if len(data) > hot.TOLLHOUSE_CACHE_MAX_BYTES:
            logger.info(
                "response cache: an answer of %d bytes is not stored (TOLLHOUSE_CACHE_MAX_BYTES %d)",
                len(data),
                hot.TOLLHOUSE_CACHE_MAX_BYTES,
            )
            return False
        await self.store.put(policy.key, data, policy.ttl)
        return True


class Recorder:
    """A miss's answer as it arrives (canonical events), stored when it turned out complete."""

    def __init__(self, cache: ResponseCache, policy: Policy) -> None:
        self.cache = cache
        self.policy = policy
        self.events: list[canonical.StreamEvent] = []
        self.broken = False  # something could not be read: nothing is stored

    def add(self, events: list[canonical.StreamEvent]) -> None:
        self.events.extend(events)

    def answer(self, response: canonical.Response) -> None:
        self.events = events_of(response)

    async def keep(self, *, served_model: str, priced_as: str) -> bool:
        """Store the answer if it is complete (and small enough); True if it was."""
        if self.broken or not complete(self.events):
            return False
        entry = Entry(events=self.events, served_model=served_model, priced_as=priced_as)
        return await self.cache.put(self.policy, entry)


# -- a hit ------------------------------------------------------------------------------------------------


async def _admit_hit(call: Call) -> None:
    """A hit is a request (rpm, concurrency), but uses no tokens and costs nothing: no tpm, no budget,
    no credits, no deployment's quota. One round trip, as every call, when a limit applies."""
    key = call.key
    assert key is not None
    subjects = [
        dataclasses.replace(
            subject, limits=Limits(rpm=subject.limits.rpm, concurrency=subject.limits.concurrency)
        )
        for subject in governor.rate_subjects(key, call.end_user)
        if subject.limits.rpm or subject.limits.concurrency
    ]
    if not subjects:
        return
    from gateway.runtime import runtime

    call.ticket = await runtime.governor.admit(
        governor.Request(
            request_id=call.request_id,
            subjects=subjects,
            deployments=[],
            pots=[],
            prompt_cost=0,
            per_token=0,
            want_tokens=0,
            max_cost=None,
        )
    )


def _saved_nanos(call: Call, entry: Entry, usage: canonical.Usage) -> int:
    price = call.catalog.price(entry.priced_as, call.started_at) if call.catalog is not None else None
    if price is None:
        return 0
    return cost_nanos(
        price=price,
        prompt_tokens=usage.prompt_tokens,
        cached_tokens=usage.cached_tokens,
        completion_tokens=usage.completion_tokens,
        cache_write_tokens=usage.cache_write_tokens,
    )


async def serve_hit(
    call: Call, codec: Codec, inbound: Inbound, entry: Entry
) -> HttpResponse | StreamingHttpResponse:
    """Answer from `entry` in the client's dialect; settle the call as a hit."""
    await _admit_hit(call)
    response = entry.response()
    call.cache_hit, call.cache_status = True, HIT
    call.served_model = entry.served_model or response.model
    call.usage = dataclasses.replace(response.usage)
    call.saved_nanos = _saved_nanos(call, entry, call.usage)
    if not inbound.stream:
        body = codec.render_response(response, inbound=inbound)
        call.first_byte()
        await call.settle_soon()
        return HttpResponse(body, content_type="application/json")
    call.streamed = True
    renderer = codec.stream_renderer(inbound=inbound, request_id=call.public_request_id)
    streaming = StreamingHttpResponse(
        _replay(call, renderer, entry.events), content_type=renderer.content_type
    )
    streaming["Cache-Control"] = "no-cache"
    streaming["X-Accel-Buffering"] = "no"
    return streaming


async def _replay(call: Call, renderer: Any, events: list[canonical.StreamEvent]) -> AsyncIterator[bytes]:
    """The stored events, one chunk each, then the dialect's terminal event."""
    from gateway.calls import CLIENT_CLOSED
    from gateway.runtime import runtime

    try:
        for event in events:
            chunk = renderer.render(event)
            if chunk:
                call.first_byte()
                yield chunk
        tail = renderer.terminal()
        if tail:
            yield tail
    except (asyncio.CancelledError, GeneratorExit):
        call.status, call.error_type = CLIENT_CLOSED, "client_disconnected"
        raise
    finally:
        runtime.spawn(call.settle())
