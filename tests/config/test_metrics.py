"""`/metrics` (config/metrics.py): who may read it (token 401, allow-list 403, loopback by default),
what it reads from Redis (usage stream, drain batches) and that a Redis outage never fails a scrape."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings as django_settings
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from billing.usage import GROUP, stream_key
from config.redis import sync_client
from config.server import metrics_dir_prepare
from gateway import metrics
from tests.support.process import ROOT, RedisServer, SilentServer

TOKEN = "metrics-token-" + "x" * 30
needs_redis = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs Redis")


def families(response) -> dict:
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def sample(found: dict, family: str, name: str | None = None, **labels: str) -> float | None:
    for s in found[family].samples if family in found else []:
        if s.name == (name or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


# -- access -----------------------------------------------------------------------------------------


def test_it_answers_loopback_only_when_nothing_is_configured(client):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 403
    assert b"tollhouse" not in refused.content


def test_it_does_not_believe_a_forwarded_address(client):
    spoofed = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert spoofed.status_code == 403


def test_a_token_is_required_when_one_is_set(client, settings):
    settings.TOLLHOUSE_METRICS_TOKEN = TOKEN
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": TOKEN}):
        response = client.get("/metrics", **headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN.encode() not in response.content
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer  {TOKEN} ").status_code == 200
    # A token alone opens it to any address (the scraper's).
    assert (
        client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code
        == 200
    )


@pytest.mark.parametrize(
    "header", ["Bearer \x00" + TOKEN, "Bearer " + "é" * 40, "Bearer " + "x" * 1_000_000, "Basic Zm9vOmJhcg=="]
)
def test_a_hostile_authorization_header_is_a_plain_401(client, settings, header):
    settings.TOLLHOUSE_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401 and len(response.content) < 200


def test_an_allow_list_admits_its_addresses_only(client, settings):
    from ipaddress import ip_network

    settings.TOLLHOUSE_METRICS_ALLOW = (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
    assert client.get("/metrics", REMOTE_ADDR="10.2.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="2001:db8::7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="::ffff:10.2.3.4").status_code == 200  # IPv4 over IPv6
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403
    assert client.get("/metrics").status_code == 403  # loopback is not in the list


def test_with_both_set_both_are_required(client, settings):
    from ipaddress import ip_network

    settings.TOLLHOUSE_METRICS_ALLOW = (ip_network("10.0.0.0/8"),)
    settings.TOLLHOUSE_METRICS_TOKEN = TOKEN
    good = f"Bearer {TOKEN}"
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1", HTTP_AUTHORIZATION=good).status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.1").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.1", HTTP_AUTHORIZATION=good).status_code == 200


def test_it_answers_get_only(client):
    response = client.post("/metrics")
    assert response.status_code == 405 and "GET" in response["Allow"]


def test_the_settings_refuse_a_weak_token_or_a_bad_allow_list_without_echoing_them(tmp_path):
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_", "CELERY_"))
    }
    base.update({"TOLLHOUSE_VAR_DIR": str(tmp_path), "TOLLHOUSE_TESTING": "1"})
    cases = {
        "TOLLHOUSE_METRICS_TOKEN": ("short-secret-abc", "TOLLHOUSE_METRICS_TOKEN must be at least 32"),
        "TOLLHOUSE_METRICS_ALLOW": ("10.0.0.0/8, not-a-network", "TOLLHOUSE_METRICS_ALLOW must list IP"),
    }
    for name, (bad, sentence) in cases.items():
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env={**base, name: bad},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and sentence in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    spaced = {**base, "TOLLHOUSE_METRICS_TOKEN": "has a space " + "x" * 40}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=spaced,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "has a space" not in result.stderr + result.stdout


# -- what it reads from Redis -----------------------------------------------------------------------


@needs_redis
def test_it_exposes_the_usage_streams_length_pending_and_lag(client):
    redis = sync_client()
    for i in range(5):
        redis.xadd(stream_key(), {b"e": b'{"n": %d}' % i})
    redis.xgroup_create(stream_key(), GROUP, id="0")
    redis.xreadgroup(GROUP, "drain-1", {stream_key(): ">"}, count=2)  # 2 read, not acknowledged yet
    time.sleep(0.05)
    found = families(client.get("/metrics"))
    assert sample(found, "tollhouse_metrics_redis_up") == 1
    assert sample(found, "tollhouse_usage_stream_length") == 5
    assert sample(found, "tollhouse_usage_stream_pending") == 2
    assert sample(found, "tollhouse_usage_stream_lag") == 3
    assert 0 < sample(found, "tollhouse_usage_stream_oldest_age_seconds") < 60


@needs_redis
def test_an_empty_or_missing_stream_is_zero_not_an_error(client):
    found = families(client.get("/metrics"))
    assert sample(found, "tollhouse_metrics_redis_up") == 1
    assert sample(found, "tollhouse_usage_stream_length") == 0
    assert sample(found, "tollhouse_usage_stream_lag") == 0
    assert sample(found, "tollhouse_usage_stream_oldest_age_seconds") == 0


@needs_redis
def test_the_workers_drain_batches_are_exposed_as_one_histogram(client, settings):
    family = "tollhouse_usage_drain_batch_events"
    seconds = "tollhouse_usage_drain_batch_duration_seconds"

    # This process may have counted "worker" batches itself (Redis refused them, in an earlier
    # test): those are added to Redis's, in the same series.
    def here(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {"drainer": "worker", **labels}) or 0.0

    local = {name: here(name) for name in (family + "_count", family + "_sum", seconds + "_sum")}
    local[family + "_bucket"] = here(family + "_bucket", le="5.0")
    metrics.drain_batch_observed(events=40, seconds=0.2)  # a Celery worker: counted in Redis
    metrics.drain_batch_observed(events=2, seconds=0.01)
    response = client.get("/metrics")
    found = families(response)
    assert found[family].type == "histogram"
    assert sample(found, family, family + "_count", drainer="worker") == local[family + "_count"] + 2
    assert sample(found, family, family + "_sum", drainer="worker") == local[family + "_sum"] + 42
    assert (
        sample(found, family, family + "_bucket", drainer="worker", le="5.0") == local[family + "_bucket"] + 1
    )
    assert sample(found, seconds, seconds + "_sum", drainer="worker") == pytest.approx(
        local[seconds + "_sum"] + 0.21
    )
    assert response.content.decode().count(f'{family}_count{{drainer="worker"}}') == 1  # one series
    # The in-process buffer's batches (no Redis: counted here) join the same family.
    redis_url, settings.REDIS_URL = settings.REDIS_URL, None
    metrics.drain_batch_observed(events=3, seconds=0.01)
    settings.REDIS_URL = redis_url
    text = client.get("/metrics").content.decode()
    assert text.count(f"# TYPE {family} histogram") == 1
    found = families(client.get("/metrics"))
    assert sample(found, family, family + "_count", drainer="buffer") >= 1
    assert sample(found, family, family + "_count", drainer="worker") == local[family + "_count"] + 2


@needs_redis
def test_a_redis_that_is_down_leaves_its_samples_out_not_the_scrape(client, settings):
    with RedisServer() as server:
        sync_client.cache_clear()
        settings.REDIS_URL = server.url
        try:
            assert sample(families(client.get("/metrics")), "tollhouse_metrics_redis_up") == 1
            server.stop()
            errors_before = metrics.SCRAPE_ERRORS.labels("redis")._value.get()
            started = time.monotonic()
            response = client.get("/metrics")
            assert response.status_code == 200
            assert time.monotonic() - started < 2
            found = families(response)
            assert sample(found, "tollhouse_metrics_redis_up") == 0
            assert "tollhouse_usage_stream_length" not in found
            assert "tollhouse_requests" in found  # the gateway's own figures are still there
            assert (
                sample(found, "tollhouse_metrics_scrape_errors", "tollhouse_metrics_scrape_errors_total") >= 1
            )
            assert metrics.SCRAPE_ERRORS.labels("redis")._value.get() == errors_before + 1
            assert str(server.port) not in response.content.decode()
        finally:
            sync_client.cache_clear()


@needs_redis
def test_a_redis_that_hangs_costs_a_scrape_one_timeout(client, settings):
    with SilentServer() as silent:
        sync_client.cache_clear()
        settings.REDIS_URL = silent.url
        try:
            started = time.monotonic()
            response = client.get("/metrics")
            assert response.status_code == 200
            assert time.monotonic() - started < 2
            assert sample(families(response), "tollhouse_metrics_redis_up") == 0
        finally:
            sync_client.cache_clear()


def test_without_redis_there_are_no_redis_samples(client, settings):
    settings.REDIS_URL = None
    found = families(client.get("/metrics"))
    assert "tollhouse_metrics_redis_up" not in found and "tollhouse_usage_stream_length" not in found


@pytest.mark.parametrize("shared", [pytest.param(True, marks=needs_redis), False])
def test_it_exposes_the_open_breakers_and_their_transitions(client, settings, shared):
    import asyncio

    from config.redis import close_async_client
    from gateway.breaker import Policy
    from gateway.runtime import runtime

    if not shared:
        settings.REDIS_URL = None
    runtime.breaker._policy = Policy(failures=2, window_us=60_000_000, cooldown_us=60_000_000)
    before = families(client.get("/metrics"))
    opened = (
        sample(
            before,
            "tollhouse_breaker_transitions",
            "tollhouse_breaker_transitions_total",
            deployment="31",
            state="open",
        )
        or 0
    )
    assert sample(before, "tollhouse_breakers_open") == 0

    async def fail_twice() -> None:
        for deployment in (31, 31, 32):
            await runtime.breaker.record(deployment, ok=False)
        if shared:
            await close_async_client()

    asyncio.run(fail_twice())
    found = families(client.get("/metrics"))
    assert sample(found, "tollhouse_breakers_open") == 1  # 31 open, 32 failed once
    assert (
        sample(
            found,
            "tollhouse_breaker_transitions",
            "tollhouse_breaker_transitions_total",
            deployment="31",
            state="open",
        )
        == opened + 1
    )


# -- the serve run's directory ----------------------------------------------------------------------


def test_serve_gives_several_workers_a_fresh_private_directory(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    path, owned = metrics_dir_prepare(workers=2)
    try:
        assert path is not None and owned
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
        assert list(path.iterdir()) == []
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    finally:
        path.rmdir()
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")


def test_one_worker_keeps_its_values_in_memory(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert metrics_dir_prepare(workers=1) == (None, False)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_a_configured_directory_is_kept_but_its_old_values_are_removed(monkeypatch, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"old run")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for workers in (1, 4):
        assert metrics_dir_prepare(workers=workers) == (tmp_path, False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_serve_removes_its_directory_when_it_stops(tmp_path):
    """A graceful stop (SIGTERM) of a multi-worker serve leaves no temporary directory behind."""
    from tests.support.process import GatewayProcess

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "REDIS_URL", "TOLLHOUSE_", "CELERY_", "PROMETHEUS_"))
    }
    env.update(
        {
            "TOLLHOUSE_VAR_DIR": str(tmp_path),
            "TOLLHOUSE_TESTING": "1",
            "TMPDIR": str(tmp_path),  # where mkdtemp makes it
            "REDIS_URL": django_settings.REDIS_URL or "",
        }
    )
    if not django_settings.REDIS_URL:
        pytest.skip("several workers need Redis")
    gateway = GatewayProcess(env=env, workers=2).start()
    try:
        [made] = list(tmp_path.glob("tollhouse-metrics-*"))
        assert httpx.get(gateway.url + "/metrics", timeout=5).status_code == 200
    finally:
        gateway.stop()
    assert not made.exists()


def test_a_process_started_with_the_directory_keeps_its_values_in_files(tmp_path):
    # What a spawned uvicorn worker does: import the app with the variable already set.
    code = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup();"
        "import config.asgi; from gateway import metrics;"
        "metrics.upstream_retried('p'); print(metrics.multiprocess())"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "TOLLHOUSE_TESTING": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "True", result.stderr
    assert [p.name.split("_")[0] for p in tmp_path.glob("*.db")] == ["counter"]
