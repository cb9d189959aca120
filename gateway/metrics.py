"""Prometheus metrics of the gateway: what is counted, and the small API the request path calls.

Recording is a few dictionary look-ups and additions per call; the request path's calls are written
to the prometheus children in batches, at most a quarter second later (`call_settled(defer=True)`,
`flush`), so it stays out of the benchmark's way. Three rules keep the series bounded whatever clients send:

- labels are what the operator configured (route names and aliases, provider names, plan names) or
  fixed sets chosen here (endpoint, status class, limit, error kind); a model name the catalog does
  not route is counted as "other", and so is every new value once a label has `MAX_VALUES` of them;
- the tenant is never a label (its plan is);
- a value that is not short printable text is never a label (it could not be exposed).

Across worker processes: `manage.py serve` points PROMETHEUS_MULTIPROC_DIR at a fresh private
directory before uvicorn starts its workers (config/server.py), so every worker writes its counters
to its own mmap file and `/metrics` (config/metrics.py) sums the files of all of them. Only counters
and histograms are kept per process, never gauges, so a worker that dies leaves nothing to clean up:
its counts stay part of the totals, as they should. Without that variable (one process, the
embedded default, tests) the values live in memory.

The usage drain runs in Celery, usually elsewhere: its batches are counted in one Redis hash (one
pipelined round trip per batch) that `/metrics` reads at scrape time (`drain_stats`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from django.conf import settings
from prometheus_client import Counter, Histogram, values
from prometheus_client.utils import floatToGoString

from config.redis import redis_key, sync_client
from gateway.dialects import ENDPOINT_LABELS

logger = logging.getLogger(__name__)

OTHER = "other"  # a value that is not (or no longer) given its own series
NONE = "none"  # the label had no value (a call refused before it named a model)
MAX_VALUES = 200  # distinct values of one label in one process before new ones count as "other"
MAX_LABEL_LENGTH = 100

# Seconds. LLM calls take from milliseconds (a refusal) to minutes (a long stream).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
DRAIN_EVENT_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
DRAIN_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# ProviderError.kind values (gateway/providers, gateway/proxy.py); anything else is "other".
UPSTREAM_ERROR_KINDS = frozenset(
    {
        "bad_response",
        "upstream_auth",
        "upstream_error",
        "upstream_rate_limited",
        "upstream_rejected",
        "upstream_stream_broken",
        "upstream_timeout",
        "upstream_unreachable",
    }
)
# What refused a call (`refusal_limit`); the error codes of gateway/governor.py's refusals.
LIMITS = ("requests", "tokens", "concurrency", "rate", "budget", "credits", "max_cost")
_LIMIT_OF_CODE = {
    "rate_limit_exceeded": "rate",  # which rate limit: only the error itself says (`refusal_limit`)
    "concurrency_limit_exceeded": "concurrency",
    "budget_exceeded": "budget",
    "credits_exhausted": "credits",
    "max_cost_exceeded": "max_cost",
}

# -- the metrics ------------------------------------------------------------------------------------

REQUESTS = Counter(
    "tollhouse_requests",
    "Model calls made with an identified key, by endpoint, requested model, status class and tenant plan.",
    ["endpoint", "model", "status_class", "plan"],
)
TOKENS = Counter(
    "tollhouse_tokens",
    "Tokens used by model calls (type: prompt or completion), as recorded in the usage ledger.",
    ["endpoint", "model", "plan", "type"],
)
CACHED_TOKENS = Counter(
    "tollhouse_cached_tokens",
    "Prompt tokens the provider served from its cache (already counted in tollhouse_tokens_total).",
    ["endpoint", "model", "plan"],
)
COST_DOLLARS = Counter(
    "tollhouse_cost_dollars",
    "Cost of model calls in USD (a float; the usage ledger holds the exact amounts).",
    ["endpoint", "model", "plan"],
)
COST_NANODOLLARS = Counter(
    "tollhouse_cost_nanodollars",
    "Cost of model calls in billionths of a USD: exact (integers) up to 9 million USD per series and process.",
    ["endpoint", "model", "plan"],
)
CACHE_LOOKUPS = Counter(
    "tollhouse_cache_lookups",
    "Calls that used the response cache, by result: hit, miss, or bypass (opted in, but not cacheable).",
    ["result"],
)
CACHE_SAVED_NANODOLLARS = Counter(
    "tollhouse_cache_saved_nanodollars",
    "What the response cache's hits would have cost, in billionths of a USD.",
    ["endpoint", "model", "plan"],
)
REFUSALS = Counter(
    "tollhouse_refusals",
    "Calls refused by a rate limit (requests, tokens, concurrency), a budget, prepaid credits or a "
    "client's max cost.",
    ["limit", "plan"],
)
UPSTREAM_ERRORS = Counter(
    "tollhouse_upstream_errors",
    "Failed attempts to call an upstream provider, by provider and kind of failure.",
    ["provider", "kind"],
)
UPSTREAM_RETRIES = Counter(
    "tollhouse_upstream_retries",
    "Attempts after the first one of a call (the next deployment tried after a retryable failure).",
    ["provider"],
)
BREAKER_TRANSITIONS = Counter(
    "tollhouse_breaker_transitions",
    "Circuit-breaker transitions of upstream deployments (state entered: open, half_open, closed), "
    "counted by the process that made them.",
    ["deployment", "state"],
)
BREAKERS_OPEN_HELP = (
    "Deployments whose circuit breaker is open or half-open now (shared through Redis; this process's "
    "own without it)."
)
LATENCY = Histogram(
    "tollhouse_request_duration_seconds",
    "Total time of a model call in the gateway, from the request to the end of the answer.",
    ["endpoint", "model"],
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    "tollhouse_time_to_first_token_seconds",
    "Time from the request to the first byte of a streamed answer sent to the client.",
    ["endpoint", "model"],
    buckets=TTFT_BUCKETS,
)
OVERHEAD = Histogram(
    "tollhouse_gateway_overhead_seconds",
    "Time a call spent in the gateway itself: total time minus time waiting for the upstream.",
    ["endpoint"],
    buckets=OVERHEAD_BUCKETS,
)
UPSTREAM_LATENCY = Histogram(
    "tollhouse_upstream_duration_seconds",
    "Time a call spent waiting for upstream providers (all attempts), by the provider that answered last.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
# Also read back from Redis at scrape time (config/metrics.py), under the same names.
DRAIN_EVENTS_HELP = (
    "Usage events written to the database per batch (drainer: the Celery worker, or the in-process buffer)."
)
DRAIN_SECONDS_HELP = "Time to write one batch of usage events to the database."
DRAIN_EVENTS = Histogram(
    "tollhouse_usage_drain_batch_events", DRAIN_EVENTS_HELP, ["drainer"], buckets=DRAIN_EVENT_BUCKETS
)
DRAIN_SECONDS = Histogram(
    "tollhouse_usage_drain_batch_duration_seconds",
    DRAIN_SECONDS_HELP,
    ["drainer"],
    buckets=DRAIN_SECONDS_BUCKETS,
)
UNIDENTIFIED = Counter(
    "tollhouse_unidentified_requests",
    "Model calls refused before any key or token was identified (no usage row), by endpoint and status.",
    ["endpoint", "status"],
)
SCRAPE_ERRORS = Counter(
    "tollhouse_metrics_scrape_errors",
    "Scrapes of /metrics that could not read a source (its samples were left out).",
    ["source"],
)


def multiprocess() -> bool:
    """True when this process's values are mmap files that /metrics sums across processes."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


# -- labels ------------------------------------------------------------------------------------------


class _Values:
    """The values one label has taken in this process: at most MAX_VALUES, then "other"."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        label = self.seen.get(value)
        if label is not None:
            return label
        if not value:
            return NONE
        if len(self.seen) >= MAX_VALUES or not _exposable(value):
            return OTHER  # not remembered: garbage must not grow this dictionary
        self.seen[value] = value
        return value


def _exposable(value: str) -> bool:
    if len(value) > MAX_LABEL_LENGTH or not value.isprintable():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


_models = _Values()
_plans = _Values()
_providers = _Values()
_deployments = _Values()


def model_label(event: Mapping[str, Any]) -> str:
    """The requested model (a route name or alias), "other" if the catalog does not route it."""
    model = event.get("requested_model")
    if not isinstance(model, str):
        return NONE
    if event.get("error_type") == "model_not_found":
        return OTHER if model else NONE
    return _models(model)


def _endpoint_label(endpoint: object) -> str:
    return endpoint if isinstance(endpoint, str) and endpoint in ENDPOINT_LABELS else OTHER


def refusal_limit(error: Exception) -> str:
    """Which limit refused a call, from the error the gateway answered with ("" if none did).

    gateway/governor.py's rate-limit refusals all carry the code "rate_limit_exceeded"; the limit is
    told by what they say: `type` "tokens" for tokens per minute, "requests" with request headers for
    requests per minute, "requests" without them for concurrency. An upstream's own 429 is not ours.
    """
    code = getattr(error, "code", None)
    if code == "rate_limit_exceeded":
        if getattr(error, "type", None) == "tokens":
            return "tokens"
        headers = getattr(error, "headers", None) or {}
        return "requests" if "x-ratelimit-limit-requests" in headers else "concurrency"
    return _LIMIT_OF_CODE.get(code, "") if isinstance(code, str) else ""


# -- the request path ------------------------------------------------------------------------------------


class _Series:
    """The label children of one (endpoint, model, plan), looked up once, and what the calls since
    the last flush added to them (plain numbers: adding to them is a few attribute writes, where a
    prometheus child's `inc` or `observe` takes a lock, or writes an mmap file in multiprocess mode)."""

    __slots__ = (
        "cached",
        "completion",
        "dollars",
        "labels",
        "latency",
        "nanos",
        "overhead",
        "pending",
        "prompt",
        "requests",
        "saved",
        "ttft",
    )

    def __init__(self, endpoint: str, model: str, plan: str) -> None:
        self.labels = (endpoint, model, plan)
        self.requests: dict[str, Any] = {}  # by status class, made when first seen
        self.prompt = TOKENS.labels(endpoint, model, plan, "prompt")
        self.completion = TOKENS.labels(endpoint, model, plan, "completion")
        self.cached = CACHED_TOKENS.labels(endpoint, model, plan)
        self.dollars = COST_DOLLARS.labels(endpoint, model, plan)
        self.nanos = COST_NANODOLLARS.labels(endpoint, model, plan)
        self.saved = CACHE_SAVED_NANODOLLARS.labels(endpoint, model, plan)
        self.latency = LATENCY.labels(endpoint, model)
        self.ttft = TTFT.labels(endpoint, model)
        self.overhead = OVERHEAD.labels(endpoint)
        self.pending = _Pending()


class _Observed:
    """A histogram's observations not yet written to its child: count per bucket and their sum."""

    __slots__ = ("bounds", "buckets", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.buckets = [0] * (len(bounds) + 1)  # the last: +Inf
        self.sum = 0.0

    def add(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as Histogram.observe picks it.
        self.buckets[bisect_left(self.bounds, amount)] += 1
        self.sum += amount

    def write(self, child: Any) -> None:
        """Into a prometheus Histogram child: its sum and its (non-cumulative) bucket values, the
        two things its own `observe` updates."""
        if not any(self.buckets):
            return
        child._sum.inc(self.sum)
        for index, count in enumerate(self.buckets):
            if count:
                child._buckets[index].inc(count)
        self.buckets = [0] * len(self.buckets)
        self.sum = 0.0


class _Pending:
    __slots__ = (
        "cached",
        "completion",
        "latency",
        "nanos",
        "overhead",
        "prompt",
        "requests",
        "saved",
        "ttft",
    )

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.prompt = self.completion = self.cached = self.nanos = self.saved = 0
        self.latency = _Observed(LATENCY_BUCKETS)
        self.overhead = _Observed(OVERHEAD_BUCKETS)
        self.ttft = _Observed(TTFT_BUCKETS)


_series: dict[tuple[str, str, str], _Series] = {}
# What _labels found for the raw values of a call (endpoint, requested model, whether the model was
# unknown, plan, provider): worked out once per combination, not per call. Every label function gives
# the same answer for the same value for the life of the process (a value over the cap stays
# "other"), so the answer can be kept; at most MAX_LABELLED combinations are (then: worked out again).
_labelled: dict[tuple[Any, ...], tuple[_Series, str, str]] = {}
MAX_LABELLED = 4096
_STATUS_CLASSES = {status: f"{status // 100}xx" for status in range(100, 600)}
_refusals: dict[tuple[str, str], Any] = {}
_upstream_latency: dict[str, tuple[Any, _Observed]] = {}
_upstream_errors: dict[tuple[str, str], Any] = {}
_upstream_retries: dict[str, Any] = {}
# Series with calls added since the last flush; the lock makes adding and flushing safe from any
# thread (a test's live server, a scrape in another thread); uncontended it costs nanoseconds.
_dirty: set[_Series] = set()
_dirty_upstream: set[str] = set()
_lock = threading.Lock()
_flush_scheduled = False
FLUSH_SECONDS = 0.25


def _number(value: object) -> int:
    """A non-negative int from an event field (bool and anything else: 0)."""
    return value if type(value) is int and value > 0 else 0


def call_settled(event: Mapping[str, Any], *, plan: str, limit: str = "", defer: bool = False) -> None:
    """Count one settled call (gateway/calls.py `Call.settle`, calls with an identified key only).

    `event` is the call's usage event (`Call.event()`); `limit` says which limit refused it, if one
    did (`refusal_limit(error)`); without it a refusal is told from the event's error type alone.

    `defer` (the request path): the call is added to its series' pending numbers, which are written
    to the prometheus children at most FLUSH_SECONDS later (`flush`, also run by every scrape of
    this process), so the calls of a quarter second cost one update per series instead of about ten
    per call. Without it the call is written at once.
    """
    upstream = event.get("upstream_latency_us")
    upstream_us = upstream if type(upstream) is int else None
    error_type = event.get("error_type")
    raw = (
        event.get("endpoint"),
        event.get("requested_model"),
        error_type == "model_not_found",
        plan,
        event.get("provider") if upstream_us is not None else None,
    )
    keep = True
    try:
        labelled = _labelled.get(raw)
    except TypeError:  # a value no dictionary can hold (a list, from a hostile event)
        labelled, keep = None, False
    if labelled is None:
        labelled = _labels(event, plan, upstream_us is not None)
        if keep and len(_labelled) < MAX_LABELLED:
            _labelled[raw] = labelled
    series, plan_label, provider_label = labelled
    status = event.get("status")
    status_class = _STATUS_CLASSES.get(status, OTHER) if isinstance(status, int) else OTHER
    streamed = event.get("streamed") is True
    ttft = event.get("ttft_us")
    with _lock:
        pending = series.pending
        pending.requests[status_class] = pending.requests.get(status_class, 0) + 1
        pending.prompt += _number(event.get("prompt_tokens"))
        pending.completion += _number(event.get("completion_tokens"))
        pending.cached += _number(event.get("cached_tokens"))
        pending.nanos += _number(event.get("cost_nanos"))
        pending.saved += _number(event.get("saved_cost_nanos"))
        pending.latency.add(_number(event.get("latency_us")) / 1e6)
        pending.overhead.add(_number(event.get("overhead_us")) / 1e6)
        if streamed and type(ttft) is int:
            # A JSON answer's "first byte" is the whole answer: only streams have a time to first token.
            pending.ttft.add(max(ttft, 0) / 1e6)
        _dirty.add(series)
        if provider_label:
            _upstream_latency[provider_label][1].add(max(upstream_us or 0, 0) / 1e6)
            _dirty_upstream.add(provider_label)

    if error_type:
        refused_by = limit or (_LIMIT_OF_CODE.get(error_type, "") if isinstance(error_type, str) else "")
        if refused_by in LIMITS:
            refusal = _refusals.get((refused_by, plan_label))
            if refusal is None:
                refusal = _refusals[(refused_by, plan_label)] = REFUSALS.labels(refused_by, plan_label)
            refusal.inc()
    if not defer:
        flush()
    else:
        _schedule_flush()


def _labels(event: Mapping[str, Any], plan: object, upstream: bool) -> tuple[_Series, str, str]:
    """The series of a call (its endpoint, model and plan labels) and its provider's label ("": no
    upstream answered), its children looked up or made."""
    endpoint = _endpoint_label(event.get("endpoint"))
    model = model_label(event)
    plan_label = _plans(plan) if isinstance(plan, str) else OTHER
    key = (endpoint, model, plan_label)
    series = _series.get(key)
    if series is None:
        series = _series[key] = _Series(endpoint, model, plan_label)
    provider_label = ""
    if upstream:
        provider = event.get("provider")
        provider_label = _providers(provider) if isinstance(provider, str) else OTHER
        if provider_label not in _upstream_latency:
            _upstream_latency[provider_label] = (
                UPSTREAM_LATENCY.labels(provider_label),
                _Observed(LATENCY_BUCKETS),
            )
    return series, plan_label, provider_label


def _schedule_flush() -> None:
    global _flush_scheduled
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop in this thread: nothing would run the timer
        flush()
        return
    _flush_scheduled = True
    loop.call_later(FLUSH_SECONDS, _flush_on_timer)


def _flush_on_timer() -> None:
    global _flush_scheduled
    _flush_scheduled = False
    flush()


def flush() -> None:
    """Write every pending call to the prometheus children (this process's)."""
    with _lock:
        series_list = list(_dirty)
        _dirty.clear()
        providers = list(_dirty_upstream)
        _dirty_upstream.clear()
        for series in series_list:
            _write(series)
        for label in providers:
            child, observed = _upstream_latency[label]
            observed.write(child)


def _write(series: _Series) -> None:
    pending = series.pending
    for status_class, count in pending.requests.items():
        child = series.requests.get(status_class)
        if child is None:
            endpoint, model, plan = series.labels
            child = series.requests[status_class] = REQUESTS.labels(endpoint, model, status_class, plan)
        child.inc(count)
    pending.requests = {}
    if pending.prompt:
        series.prompt.inc(pending.prompt)
    if pending.completion:
        series.completion.inc(pending.completion)
    if pending.cached:
        series.cached.inc(pending.cached)
    if pending.nanos:
        series.nanos.inc(pending.nanos)
        series.dollars.inc(pending.nanos / 1e9)
    if pending.saved:
        series.saved.inc(pending.saved)
    pending.prompt = pending.completion = pending.cached = pending.nanos = pending.saved = 0
    pending.latency.write(series.latency)
    pending.overhead.write(series.overhead)
    pending.ttft.write(series.ttft)


_unidentified: dict[tuple[str, str], Any] = {}


def call_unidentified(*, endpoint: str, status: int) -> None:
    """Count a call refused before a key or token was identified (a missing or unknown key, a
    client blocked after too many failures): strangers leave no usage row, only this."""
    key = (_endpoint_label(endpoint), str(status) if status in (400, 401, 403, 413, 429, 431) else OTHER)
    child = _unidentified.get(key)
    if child is None:
        child = _unidentified[key] = UNIDENTIFIED.labels(*key)
    child.inc()


_CACHE_RESULTS = ("hit", "miss", "bypass")


def cache_looked_up(result: str) -> None:
    """A call used the response cache (gateway/cache.py): `result` hit, miss or bypass."""
    CACHE_LOOKUPS.labels(result if result in _CACHE_RESULTS else OTHER).inc()


def upstream_failed(provider: str, kind: str) -> None:
    """One attempt to call `provider` failed (`kind`: ProviderError.kind)."""
    key = (_providers(provider), kind if kind in UPSTREAM_ERROR_KINDS else OTHER)
    child = _upstream_errors.get(key)
    if child is None:
        child = _upstream_errors[key] = UPSTREAM_ERRORS.labels(*key)
    child.inc()


def upstream_retried(provider: str) -> None:
    """A call moved on to another attempt, at `provider`."""
    label = _providers(provider)
    child = _upstream_retries.get(label)
    if child is None:
        child = _upstream_retries[label] = UPSTREAM_RETRIES.labels(label)
    child.inc()


def breaker_transition(deployment_id: int, state: str) -> None:
    """The circuit breaker of a deployment entered `state` (gateway/breaker.py)."""
    BREAKER_TRANSITIONS.labels(_deployments(str(deployment_id)), state).inc()


# -- the usage drain --------------------------------------------------------------------------------------

DRAIN_KEY = "metrics:drain"
_PUBLISH_WARNING_SECONDS = 60.0
_last_publish_warning = -math.inf


def drain_key() -> str:
    return redis_key(DRAIN_KEY)


def _bucket(value: float, buckets: Sequence[float]) -> str:
    """The (non-cumulative) bucket a value falls in: the index of its upper bound, or "inf"."""
    for index, bound in enumerate(buckets):
        if value <= bound:
            return str(index)
    return "inf"


def drain_batch_observed(*, events: int, seconds: float) -> None:
    """Count one batch of usage events written to the database (sync; the drain's own thread).

    In a process whose values /metrics reads (a gateway worker, or no Redis at all: the in-process
    buffer) the batch is counted here. Anywhere else (the Celery worker, on another machine perhaps)
    it is counted in a Redis hash, in one round trip, for /metrics to read at scrape time. If Redis
    refuses, the batch is counted here instead (lost for /metrics if this process is not scraped).
    """
    events = max(int(events), 0)
    seconds = max(float(seconds), 0.0)
    if settings.REDIS_URL and not multiprocess():
        try:
            _publish(events, seconds)
        except (redis.RedisError, OSError) as exc:
            _publish_failed(exc)
        else:
            return
        _observe_locally("worker", events, seconds)
        return
    _observe_locally("buffer", events, seconds)


def _observe_locally(drainer: str, events: int, seconds: float) -> None:
    DRAIN_EVENTS.labels(drainer).observe(events)
    DRAIN_SECONDS.labels(drainer).observe(seconds)


def _publish(events: int, seconds: float) -> None:
    key = drain_key()
    pipe = sync_client().pipeline(transaction=False)
    pipe.hincrby(key, "count", 1)
    pipe.hincrby(key, "events", events)
    pipe.hincrbyfloat(key, "seconds", seconds)
    pipe.hincrby(key, "e" + _bucket(events, DRAIN_EVENT_BUCKETS), 1)
    pipe.hincrby(key, "s" + _bucket(seconds, DRAIN_SECONDS_BUCKETS), 1)
    pipe.execute()


def _publish_failed(exc: Exception) -> None:
    global _last_publish_warning
    now = time.monotonic()
    if now - _last_publish_warning >= _PUBLISH_WARNING_SECONDS:
        _last_publish_warning = now
        logger.warning(
            "usage drain metrics could not be counted in Redis (%s); counted in process %d only "
            "(this message at most once a minute)",
            type(exc).__name__,
            os.getpid(),
        )


def drain_stats(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    """The drain hash read back (HGETALL): count, sums and cumulative buckets for both histograms."""
    fields = {k.decode(): v.decode() for k, v in raw.items()}

    def cumulative(prefix: str, bounds: Sequence[float]) -> list[tuple[str, float]]:
        total, out = 0.0, []
        for index, bound in enumerate(bounds):
            total += float(fields.get(f"{prefix}{index}", 0))
            out.append((floatToGoString(bound), total))
        out.append(("+Inf", total + float(fields.get(f"{prefix}inf", 0))))
        return out

    return {
        "count": float(fields.get("count", 0)),
        "events_sum": float(fields.get("events", 0)),
        "seconds_sum": float(fields.get("seconds", 0)),
        "events_buckets": cumulative("e", DRAIN_EVENT_BUCKETS),
        "seconds_buckets": cumulative("s", DRAIN_SECONDS_BUCKETS),
    }
