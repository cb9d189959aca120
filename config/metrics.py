"""`/metrics`: the Prometheus text exposition of the whole gateway, for a scraper.

What it exposes: the counters and histograms of every gateway worker process (gateway/metrics.py,
summed across processes when `manage.py serve` runs several), and, read from Redis at scrape time,
the usage stream's length, pending entries and lag, and the usage drain's batches (counted by the
Celery worker, which /metrics cannot reach otherwise). A Redis that fails leaves those samples out
(`tollhouse_metrics_redis_up 0`, `tollhouse_metrics_scrape_errors_total`), never the scrape.

Who may read it (TOLLHOUSE_METRICS_TOKEN, TOLLHOUSE_METRICS_ALLOW):
- an allow-list set: only client IPs in it (config/clientip.py decides the IP), else 403;
- a token set: only requests with `Authorization: Bearer <token>` (compared in constant time), else
  401 with `WWW-Authenticate: Bearer`; with both set, both are required;
- neither set: loopback only (127.0.0.0/8 and ::1), so a gateway never publishes its figures (plans,
  model names, spend) to the internet by default.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from config import clientip
from config.redis import sync_client
from gateway import breaker
from gateway import metrics as gateway_metrics

logger = logging.getLogger(__name__)

LOOPBACK: tuple[IPv4Network | IPv6Network, ...] = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


# -- access -----------------------------------------------------------------------------------------


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _plain(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def refusal(request: HttpRequest) -> HttpResponse | None:
    """The answer to a caller who may not read the metrics, or None if they may."""
    token: str | None = settings.TOLLHOUSE_METRICS_TOKEN
    allowed = settings.TOLLHOUSE_METRICS_ALLOW or (() if token else LOOPBACK)
    if allowed:
        address = clientip.parse_ip(clientip.from_meta(request.META))
        if address is None or not any(address in network for network in allowed):
            return _plain(403, "This address may not read the metrics.")
    if token:
        given = _bearer(request.headers.get("authorization"))
        # Bytes of the same encoding on both sides; compare_digest takes as long whatever matches.
        if given is None or not hmac.compare_digest(
            given.encode("utf-8", "replace"), token.encode("utf-8", "replace")
        ):
            response = _plain(401, "Reading the metrics needs a valid bearer token.")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return None


# -- what is exposed --------------------------------------------------------------------------------


def _stream_families(results: list[Any]) -> list[Metric]:
    length, groups, first, now = results
    pending = 0
    lag: int | None = None
    from billing.usage import GROUP

    for group in groups if isinstance(groups, list) else []:  # an error: no stream yet
        name = group.get("name")
        if (name.decode() if isinstance(name, bytes) else name) == GROUP:
            pending = int(group.get("pending") or 0)
            lag = group.get("lag")
    if lag is None:
        # Drained entries are deleted, so what is left is either read and pending, or not read yet.
        lag = max(int(length) - pending, 0)
    oldest = 0.0
    if first:
        redis_now_ms = int(now[0]) * 1000 + int(now[1]) // 1000
        oldest = max(redis_now_ms - int(first[0][0].split(b"-")[0]), 0) / 1000

    def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, documentation, value=value)

    return [
        gauge(
            "tollhouse_usage_stream_length",
            "Usage events in the Redis stream, not yet in the database.",
            length,
        ),
        gauge(
            "tollhouse_usage_stream_pending",
            "Usage events a drain has read but not yet acknowledged (written, or being written).",
            pending,
        ),
        gauge("tollhouse_usage_stream_lag", "Usage events no drain has read yet.", int(lag)),
        gauge(
            "tollhouse_usage_stream_oldest_age_seconds",
            "Age of the oldest usage event still in the stream (0 when it is empty): how far the ledger is behind.",
            oldest,
        ),
    ]


def _drain_families(raw: dict[bytes, bytes]) -> list[Metric]:
    if not raw:
        return []
    stats = gateway_metrics.drain_stats(raw)
    events = HistogramMetricFamily(
        "tollhouse_usage_drain_batch_events", gateway_metrics.DRAIN_EVENTS_HELP, labels=["drainer"]
    )
    events.add_metric(["worker"], stats["events_buckets"], stats["events_sum"])
    seconds = HistogramMetricFamily(
        "tollhouse_usage_drain_batch_duration_seconds", gateway_metrics.DRAIN_SECONDS_HELP, labels=["drainer"]
    )
    seconds.add_metric(["worker"], stats["seconds_buckets"], stats["seconds_sum"])
    return [events, seconds]


def redis_families() -> list[Metric]:
    """What /metrics reads from Redis, in one round trip; a failure leaves it out and says so."""
    from billing.usage import stream_key

    up = GaugeMetricFamily(
        "tollhouse_metrics_redis_up",
        "1 if this scrape could read Redis (usage stream, drain batches), else 0 and those samples are missing.",
    )
    stream = stream_key()
    try:
        pipe = sync_client().pipeline(transaction=False)
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
        pipe.xrange(stream, count=1)
        pipe.time()
        pipe.hgetall(gateway_metrics.drain_key())
        pipe.hlen(breaker.open_key())
        results = pipe.execute(raise_on_error=False)
        for index, result in enumerate(results):
            # XINFO GROUPS on a stream nobody wrote yet is an error that only means "none".
            if isinstance(result, Exception) and not (index == 1 and "no such key" in str(result)):
                raise result
        families = [
            *_stream_families(results[:4]),
            *_drain_families(results[4]),
            GaugeMetricFamily(
                "tollhouse_breakers_open", gateway_metrics.BREAKERS_OPEN_HELP, value=results[5]
            ),
        ]
    except (redis.RedisError, OSError) as exc:
        logger.warning("metrics: Redis could not be read (%s); its samples are left out", type(exc).__name__)
        gateway_metrics.SCRAPE_ERRORS.labels("redis").inc()
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    return [up, *families]


def _local_breakers() -> Metric:
    from gateway.runtime import runtime

    return GaugeMetricFamily(
        "tollhouse_breakers_open",
        gateway_metrics.BREAKERS_OPEN_HELP,
        value=runtime.breaker.local_open_count(),
    )


class _Families:
    """A collector of families already collected (what generate_latest asks for)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _merged(*groups: Iterable[Metric]) -> _Families:
    """One family per name: the drain's histograms come from Redis (the Celery worker's batches) and
    from this host's processes (the in-process buffer's), and must be exposed as one metric. A series
    both have (a drain that could not reach Redis counted its batch in process) is added up: counts,
    sums and buckets are all additive; a `_created` time is kept from the first."""
    by_name: dict[str, Metric] = {}
    for group in groups:
        for family in group:
            known = by_name.get(family.name)
            if known is None:
                by_name[family.name] = family
                continue
            if known.type != family.type:
                continue
            index = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(known.samples)}
            for sample in family.samples:
                at = index.get((sample.name, tuple(sorted(sample.labels.items()))))
                if at is None:
                    known.samples.append(sample)
                elif not sample.name.endswith("_created"):
                    known.samples[at] = known.samples[at]._replace(
                        value=known.samples[at].value + sample.value
                    )
    return _Families(by_name.values())


def exposition() -> bytes:
    """The text exposition (format 0.0.4) of everything above. Blocking: files and Redis."""
    gateway_metrics.flush()  # this process's calls of the last quarter second, not yet written
    # First: it may count a scrape error. Without Redis the breakers are this one process's.
    from_redis = redis_families() if settings.REDIS_URL else [_local_breakers()]
    if gateway_metrics.multiprocess():
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry)
        local = registry.collect()
    else:
        local = REGISTRY.collect()
    return generate_latest(_merged(local, from_redis))


async def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET and HEAD only: config/urls.py wraps it in config.health.read_only."""
    refused = refusal(request)
    if refused is not None:
        return refused
    # Reading every worker's files and Redis blocks: not in the event loop, and not in the thread
    # the request path uses for its database reads either.
    body = await sync_to_async(exposition, thread_sensitive=False)()
    response = HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response
