"""gateway/metrics.py: what one settled call, upstream failure and drained batch add to the metrics,
under which labels, and that no value a client sends can add a series (or break the exposition)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.conf import settings
from prometheus_client import REGISTRY

from config.redis import sync_client
from gateway import errors, metrics
from gateway.auth import Limits
from gateway.governor import LocalBackend, Pot, Request, Subject, _refusal


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": "r1",
        "endpoint": "chat.completions",
        "requested_model": "gpt-4.1",
        "served_model": "gpt-4.1-2025-04-14",
        "provider": "mock",
        "status": 200,
        "error_type": "",
        "prompt_tokens": 12,
        "cached_tokens": 4,
        "completion_tokens": 30,
        "cost_nanos": 123_456,
        "latency_us": 250_000,
        "ttft_us": 40_000,
        "upstream_latency_us": 240_000,
        "overhead_us": 10_000,
        "attempts": 1,
        "streamed": True,
    }
    return {**base, **overrides}


CALL = {"endpoint": "chat.completions", "model": "gpt-4.1", "plan": "Team"}


def test_it_counts_a_call_its_tokens_and_its_cost():
    requests = value("tollhouse_requests_total", **CALL, status_class="2xx")
    prompt = value("tollhouse_tokens_total", **CALL, type="prompt")
    completion = value("tollhouse_tokens_total", **CALL, type="completion")
    cached = value("tollhouse_cached_tokens_total", **CALL)
    nanos = value("tollhouse_cost_nanodollars_total", **CALL)
    dollars = value("tollhouse_cost_dollars_total", **CALL)

    metrics.call_settled(event(), plan="Team")
    metrics.call_settled(
        event(cost_nanos=1, prompt_tokens=1, completion_tokens=0, cached_tokens=0), plan="Team"
    )

    assert value("tollhouse_requests_total", **CALL, status_class="2xx") == requests + 2
    assert value("tollhouse_tokens_total", **CALL, type="prompt") == prompt + 13
    assert value("tollhouse_tokens_total", **CALL, type="completion") == completion + 30
    assert value("tollhouse_cached_tokens_total", **CALL) == cached + 4
    assert value("tollhouse_cost_nanodollars_total", **CALL) == nanos + 123_457
    assert value("tollhouse_cost_dollars_total", **CALL) == pytest.approx(dollars + 0.000123457, abs=1e-15)


def test_it_observes_the_latencies_in_seconds():
    labels = {"endpoint": "chat.completions", "model": "gpt-4.1"}
    before = {
        name: value(name + "_count", **labels)
        for name in ("tollhouse_request_duration_seconds", "tollhouse_time_to_first_token_seconds")
    }
    overhead = value("tollhouse_gateway_overhead_seconds_sum", endpoint="chat.completions")
    upstream = value("tollhouse_upstream_duration_seconds_sum", provider="mock")
    latency_sum = value("tollhouse_request_duration_seconds_sum", **labels)

    metrics.call_settled(event(), plan="Team")

    assert (
        value("tollhouse_request_duration_seconds_count", **labels)
        == before["tollhouse_request_duration_seconds"] + 1
    )
    assert value("tollhouse_request_duration_seconds_sum", **labels) == pytest.approx(latency_sum + 0.25)
    assert value("tollhouse_gateway_overhead_seconds_sum", endpoint="chat.completions") == pytest.approx(
        overhead + 0.01
    )
    assert value("tollhouse_upstream_duration_seconds_sum", provider="mock") == pytest.approx(upstream + 0.24)
    ttft = "tollhouse_time_to_first_token_seconds"
    assert value(ttft + "_count", **labels) == before[ttft] + 1
    assert value(ttft + "_bucket", **labels, le="0.05") >= 1


def test_only_streams_have_a_time_to_first_token():
    labels = {"endpoint": "embeddings", "model": "gpt-4.1"}
    ttft = value("tollhouse_time_to_first_token_seconds_count", **labels)
    metrics.call_settled(event(endpoint="embeddings", streamed=False), plan="Team")
    metrics.call_settled(event(endpoint="embeddings", streamed=True, ttft_us=None), plan="Team")  # no byte
    assert value("tollhouse_time_to_first_token_seconds_count", **labels) == ttft
    assert value("tollhouse_request_duration_seconds_count", **labels) >= 2


@pytest.mark.parametrize(
    ("status", "status_class"), [(200, "2xx"), (404, "4xx"), (429, "4xx"), (499, "4xx"), (502, "5xx")]
)
def test_it_counts_requests_by_status_class(status, status_class):
    labels = {**CALL, "plan": "pro", "status_class": status_class}
    before = value("tollhouse_requests_total", **labels)
    metrics.call_settled(event(status=status, error_type="" if status == 200 else "x"), plan="pro")
    assert value("tollhouse_requests_total", **labels) == before + 1


def test_an_unrouted_model_is_counted_as_other_whatever_its_name():
    names = ["gpt-5-ultra", "\x00evil", "\ud800", "m" * 1_000_000, "a\nb"]
    before = value("tollhouse_requests_total", **{**CALL, "model": "other"}, status_class="4xx")
    for name in names:
        metrics.call_settled(
            event(requested_model=name, status=404, error_type="model_not_found", prompt_tokens=0),
            plan="Team",
        )
    assert value("tollhouse_requests_total", **{**CALL, "model": "other"}, status_class="4xx") == before + 5
    for name in names:
        assert name not in metrics._models.seen
    exposed = render()
    assert b"gpt-5-ultra" not in exposed and b"evil" not in exposed


def test_a_call_refused_before_it_named_a_model_is_counted_as_none():
    labels = {**CALL, "model": "none", "status_class": "4xx"}
    before = value("tollhouse_requests_total", **labels)
    metrics.call_settled(
        event(requested_model="", status=400, error_type="invalid_request_error"), plan="Team"
    )
    assert value("tollhouse_requests_total", **labels) == before + 1


def test_a_label_keeps_at_most_max_values_then_counts_other(monkeypatch):
    labels = metrics._Values()
    monkeypatch.setattr(metrics, "MAX_VALUES", 3)
    assert [labels(v) for v in ("a", "b", "c", "d", "e", "a")] == ["a", "b", "c", "other", "other", "a"]
    assert len(labels.seen) == 3  # new values beyond the cap are not remembered either


def test_labels_that_could_not_be_exposed_are_other():
    labels = metrics._Values()
    for bad in ("\x00", "\ud800x", "tab\there", "é" * 101, "line\n"):
        assert labels(bad) == "other"
    assert labels("Team plan (é)") == "Team plan (é)"
    assert labels("") == "none"


def test_labels_worked_out_once_per_combination_still_tell_an_unknown_model_from_a_known_one():
    known = {**CALL, "status_class": "2xx"}
    unknown = {**CALL, "model": "other", "status_class": "4xx"}
    before_known, before_unknown = (
        value("tollhouse_requests_total", **known),
        value("tollhouse_requests_total", **unknown),
    )
    for _ in range(2):  # the second round is answered from the memo
        metrics.call_settled(event(), plan="Team")
        metrics.call_settled(event(status=404, error_type="model_not_found"), plan="Team")
    assert value("tollhouse_requests_total", **known) == before_known + 2
    assert value("tollhouse_requests_total", **unknown) == before_unknown + 2


def test_the_memo_of_labels_stays_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_LABELLED", len(metrics._labelled) + 3)
    labels = {**CALL, "model": "other", "status_class": "4xx"}
    before = value("tollhouse_requests_total", **labels)
    for i in range(20):
        metrics.call_settled(
            event(requested_model=f"nope-{i}", status=404, error_type="model_not_found"), plan="Team"
        )
    assert len(metrics._labelled) == metrics.MAX_LABELLED
    assert value("tollhouse_requests_total", **labels) == before + 20


def test_a_garbage_event_counts_without_raising():
    before = value(
        "tollhouse_requests_total", endpoint="other", model="none", status_class="other", plan="other"
    )
    metrics.call_settled(
        {
            "endpoint": ["x"],
            "requested_model": 5,
            "status": "200",
            "prompt_tokens": -5,
            "completion_tokens": True,
            "cost_nanos": 1.5,
            "latency_us": None,
            "ttft_us": "x",
            "upstream_latency_us": 3.2,
            "overhead_us": -1,
            "streamed": "yes",
            "error_type": None,
        },
        plan=None,  # type: ignore[arg-type]
    )
    after = value(
        "tollhouse_requests_total", endpoint="other", model="none", status_class="other", plan="other"
    )
    assert after == before + 1


# -- refusals ----------------------------------------------------------------------------------------


def refusal_of(**request: Any) -> errors.GatewayError:
    base: dict[str, Any] = {
        "request_id": "r",
        "subjects": [],
        "deployments": [],
        "pots": [],
        "prompt_cost": 0,
        "per_token": 0,
        "want_tokens": 0,
        "max_cost": None,
    }
    backend = LocalBackend()
    with pytest.raises(errors.GatewayError) as caught:
        for _ in range(3):
            asyncio.run(backend.admit(Request(**{**base, **request}), 60_000_000))
            base["request_id"] += "x"
    return caught.value


def subject(**limits: int) -> Subject:
    return Subject("API key", ("m:r", "m:t", "m:c"), Limits(**limits))


def test_it_tells_which_rate_limit_refused_from_the_governors_own_errors():
    assert metrics.refusal_limit(refusal_of(subjects=[subject(rpm=1)])) == "requests"
    assert metrics.refusal_limit(refusal_of(subjects=[subject(concurrency=1)])) == "concurrency"
    assert metrics.refusal_limit(refusal_of(max_cost=0, prompt_cost=10)) == "max_cost"
    backend = LocalBackend()
    backend.tat["m:t"] = 10**18  # the tokens of the minute are used up
    with pytest.raises(errors.RateLimited) as caught:
        asyncio.run(
            backend.admit(
                Request("r", [subject(tpm=10)], [], [], 0, 0, 0, None),
                60_000_000,
            )
        )
    assert metrics.refusal_limit(caught.value) == "tokens"


def test_it_tells_budgets_and_credits_apart():
    def pot(kind: str) -> Pot:
        return Pot("k", kind, 100, "", "the monthly budget of this organization", {}, 0)

    for kind, limit in (("b", "budget"), ("c", "credits")):
        request = Request("r", [], [], [pot(kind)], 10, 0, 0, None)
        assert metrics.refusal_limit(_refusal(["pay", 0, 0, 10], request)) == limit


def test_errors_that_are_no_limit_of_ours_name_none():
    upstream_429 = errors.RateLimited("slow down", code="upstream_rate_limited")
    for error in (upstream_429, errors.NotFound("no"), errors.BadRequest("bad"), ValueError("x")):
        assert metrics.refusal_limit(error) == ""


def test_it_counts_refusals_by_limit_and_plan():
    before = value("tollhouse_refusals_total", limit="concurrency", plan="free")
    fallback = value("tollhouse_refusals_total", limit="budget", plan="free")
    rate = value("tollhouse_refusals_total", limit="rate", plan="free")
    metrics.call_settled(
        event(status=429, error_type="rate_limit_exceeded"), plan="free", limit="concurrency"
    )
    # Without `limit`, the event's error type says what it can.
    metrics.call_settled(event(status=402, error_type="budget_exceeded"), plan="free")
    metrics.call_settled(event(status=429, error_type="rate_limit_exceeded"), plan="free")
    metrics.call_settled(event(status=502, error_type="upstream_error"), plan="free")
    assert value("tollhouse_refusals_total", limit="concurrency", plan="free") == before + 1
    assert value("tollhouse_refusals_total", limit="budget", plan="free") == fallback + 1
    assert value("tollhouse_refusals_total", limit="rate", plan="free") == rate + 1


# -- upstream ---------------------------------------------------------------------------------------


def test_it_counts_upstream_failures_by_provider_and_kind_and_retries():
    timeout = value("tollhouse_upstream_errors_total", provider="openai", kind="upstream_timeout")
    other = value("tollhouse_upstream_errors_total", provider="openai", kind="other")
    retries = value("tollhouse_upstream_retries_total", provider="openai")
    metrics.upstream_failed("openai", "upstream_timeout")
    metrics.upstream_failed("openai", "made-up kind \x00")
    metrics.upstream_retried("openai")
    assert value("tollhouse_upstream_errors_total", provider="openai", kind="upstream_timeout") == timeout + 1
    assert value("tollhouse_upstream_errors_total", provider="openai", kind="other") == other + 1
    assert value("tollhouse_upstream_retries_total", provider="openai") == retries + 1


# -- the drain --------------------------------------------------------------------------------------


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")
def test_a_drained_batch_is_counted_in_redis_in_one_hash():
    metrics.drain_batch_observed(events=120, seconds=0.03)
    metrics.drain_batch_observed(events=1, seconds=20.0)
    raw = sync_client().hgetall(metrics.drain_key())
    stats = metrics.drain_stats(raw)
    assert stats["count"] == 2 and stats["events_sum"] == 121
    assert stats["seconds_sum"] == pytest.approx(20.03)
    assert dict(stats["events_buckets"])["1.0"] == 1  # the batch of one
    assert dict(stats["events_buckets"])["250.0"] == 2  # cumulative: both
    assert dict(stats["seconds_buckets"])["10.0"] == 1  # 20 s is above every bound but +Inf
    assert dict(stats["seconds_buckets"])["+Inf"] == 2


def test_without_redis_a_drained_batch_is_counted_in_process(settings):
    settings.REDIS_URL = None
    before = value("tollhouse_usage_drain_batch_events_count", drainer="buffer")
    total = value("tollhouse_usage_drain_batch_events_sum", drainer="buffer")
    metrics.drain_batch_observed(events=7, seconds=0.002)
    assert value("tollhouse_usage_drain_batch_events_count", drainer="buffer") == before + 1
    assert value("tollhouse_usage_drain_batch_events_sum", drainer="buffer") == total + 7


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")
def test_when_redis_refuses_a_drained_batch_is_counted_in_process(settings, caplog):
    from tests.support.process import free_port

    sync_client.cache_clear()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    try:
        before = value("tollhouse_usage_drain_batch_events_count", drainer="worker")
        metrics._last_publish_warning = float("-inf")
        metrics.drain_batch_observed(events=3, seconds=0.01)
        metrics.drain_batch_observed(events=3, seconds=0.01)
        assert value("tollhouse_usage_drain_batch_events_count", drainer="worker") == before + 2
        warnings = [r for r in caplog.records if "could not be counted in Redis" in r.getMessage()]
        assert len(warnings) == 1  # once a minute, not once a batch
    finally:
        sync_client.cache_clear()


# -- names ------------------------------------------------------------------------------------------


def render() -> bytes:
    from config.metrics import exposition

    return exposition()


def test_it_counts_the_response_caches_lookups_and_what_its_hits_saved():
    hits = value("tollhouse_cache_lookups_total", result="hit")
    metrics.cache_looked_up("hit")
    metrics.cache_looked_up("something else")
    assert value("tollhouse_cache_lookups_total", result="hit") == hits + 1
    labels = {"endpoint": "chat.completions", "model": "gpt-4.1", "plan": "Team"}
    saved = value("tollhouse_cache_saved_nanodollars_total", **labels)
    metrics.call_settled(event(cache_hit=True, cost_nanos=0, saved_cost_nanos=1234), plan="Team")
    assert value("tollhouse_cache_saved_nanodollars_total", **labels) == saved + 1234


def test_every_metric_follows_prometheus_conventions():
    from prometheus_client.parser import text_string_to_metric_families

    metrics.call_settled(event(), plan="Team")
    metrics.upstream_failed("mock", "upstream_error")
    metrics.upstream_retried("mock")
    families = {f.name: f for f in text_string_to_metric_families(render().decode())}
    ours = {name: f for name, f in families.items() if name.startswith("tollhouse_")}
    expected = {
        "tollhouse_requests": "counter",
        "tollhouse_tokens": "counter",
        "tollhouse_cached_tokens": "counter",
        "tollhouse_cost_dollars": "counter",
        "tollhouse_cost_nanodollars": "counter",
        "tollhouse_upstream_errors": "counter",
        "tollhouse_upstream_retries": "counter",
        "tollhouse_request_duration_seconds": "histogram",
        "tollhouse_time_to_first_token_seconds": "histogram",
        "tollhouse_gateway_overhead_seconds": "histogram",
        "tollhouse_upstream_duration_seconds": "histogram",
    }
    for name, kind in expected.items():
        assert ours[name].type == kind, name
    for family in ours.values():
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name in {family.name + "_total", family.name + "_created"}
            assert "tenant" not in sample.labels and "key" not in sample.labels


def test_calls_refused_before_any_key_is_identified_are_counted_apart_by_status():
    before = value("tollhouse_unidentified_requests_total", endpoint="chat.completions", status="401")
    other = value("tollhouse_unidentified_requests_total", endpoint="other", status="other")
    metrics.call_unidentified(endpoint="chat.completions", status=401)
    metrics.call_unidentified(endpoint="chat.completions", status=401)
    metrics.call_unidentified(endpoint="\x00evil", status=599)  # fixed label sets: no new series
    assert (
        value("tollhouse_unidentified_requests_total", endpoint="chat.completions", status="401")
        == before + 2
    )
    assert value("tollhouse_unidentified_requests_total", endpoint="other", status="other") == other + 1


def _histogram(name: str, **labels: str) -> dict[str, float]:
    return {
        sample.labels["le"]: sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name + "_bucket" and all(sample.labels.get(k) == v for k, v in labels.items())
    }


def test_the_request_paths_calls_are_written_at_the_next_flush_as_if_observed_one_by_one():
    """call_settled(defer=True) (Call.settle): counted within a quarter second, in batches; the
    batch gives the same totals and buckets as the same calls observed one at a time."""
    deferred = {"endpoint": "embeddings", "model": "gpt-4.1"}
    direct = {"endpoint": "responses", "model": "gpt-4.1"}
    latencies = [0, 3_000, 5_000, 9_999, 10_000, 250_000, 1_000_000, 7_000_000, 400_000_000]

    async def go():
        before = value("tollhouse_requests_total", **deferred, status_class="2xx", plan="Team")
        for latency in latencies:
            metrics.call_settled(event(endpoint="embeddings", latency_us=latency), plan="Team", defer=True)
        pending = value("tollhouse_requests_total", **deferred, status_class="2xx", plan="Team") - before
        await asyncio.sleep(metrics.FLUSH_SECONDS + 0.1)
        flushed = value("tollhouse_requests_total", **deferred, status_class="2xx", plan="Team") - before
        return pending, flushed

    buckets_before = _histogram("tollhouse_request_duration_seconds", **deferred)
    direct_before = _histogram("tollhouse_request_duration_seconds", **direct)
    pending, flushed = asyncio.run(go())
    for latency in latencies:
        metrics.call_settled(event(endpoint="responses", latency_us=latency), plan="Team")

    assert pending == 0 and flushed == len(latencies)
    grown = {
        le: v - buckets_before.get(le, 0.0)
        for le, v in _histogram("tollhouse_request_duration_seconds", **deferred).items()
    }
    grown_direct = {
        le: v - direct_before.get(le, 0.0)
        for le, v in _histogram("tollhouse_request_duration_seconds", **direct).items()
    }
    assert grown == grown_direct and grown["+Inf"] == len(latencies)
    assert grown["0.01"] == 5  # 0, 3 ms, 5 ms, 9.999 ms and exactly 10 ms (le is inclusive)


def test_a_scrape_writes_what_is_pending():
    labels = {"endpoint": "embeddings", "model": "gpt-4.1", "status_class": "4xx", "plan": "Team"}

    async def go():
        before = value("tollhouse_requests_total", **labels)
        metrics.call_settled(event(endpoint="embeddings", status=400), plan="Team", defer=True)
        from config.metrics import exposition

        exposition()  # in the same loop iteration: before the timer could have flushed
        return value("tollhouse_requests_total", **labels) - before

    assert asyncio.run(go()) == 1
