"""gateway/breaker.py: a deployment that keeps failing is cooled down, then probed by exactly one call;
the same rules in-process (embedded) and through Redis (every process agrees), each transition
logged once and counted (issue 14, DESIGN §5). Real Redis; no mocks of our own store."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from prometheus_client import REGISTRY

from config.redis import close_async_client, sync_client
from gateway import breaker as breaker_module
from gateway.breaker import CircuitBreaker, Policy, open_key
from tests.support.process import ROOT, free_port

needs_redis = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")

POLICY = Policy(failures=3, window_us=600_000, cooldown_us=400_000)
COOLDOWN = POLICY.cooldown_us / 1_000_000


class Loop:
    """One event loop for the whole test: the Redis clients belong to a loop (config/redis.py)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        if django_settings.REDIS_URL:
            self.run(close_async_client())
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    runner = Loop()
    yield runner
    runner.close()


@pytest.fixture(params=["local", pytest.param("redis", marks=needs_redis)])
def kind(request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "local":
        settings.REDIS_URL = None
    else:
        # Two breakers stand for two processes; they see each other's changes at once here (the
        # sync interval has its own test).
        monkeypatch.setattr(breaker_module, "SYNC_SECONDS", 0.0)
    return str(request.param)


def fail(loop: Loop, breaker: CircuitBreaker, deployment: int, times: int) -> None:
    for _ in range(times):
        loop.run(breaker.record(deployment, ok=False))


def allowed(loop: Loop, breaker: CircuitBreaker, deployment: int) -> bool:
    return bool(loop.run(breaker.allow(deployment)))


def transitions(deployment: int, state: str) -> float:
    value = REGISTRY.get_sample_value(
        "tollhouse_breaker_transitions_total", {"deployment": str(deployment), "state": state}
    )
    return value or 0.0


def test_it_opens_after_n_failures_within_the_window_and_only_for_that_deployment(kind, loop):
    breaker = CircuitBreaker(POLICY)
    fail(loop, breaker, 7, 2)
    assert allowed(loop, breaker, 7)
    fail(loop, breaker, 7, 1)
    assert not allowed(loop, breaker, 7)
    assert allowed(loop, breaker, 8) and allowed(loop, breaker, None)


def test_failures_further_apart_than_the_window_do_not_open_it(kind, loop):
    breaker = CircuitBreaker(POLICY)
    fail(loop, breaker, 7, 2)
    time.sleep(POLICY.window_us / 1_000_000 + 0.1)
    fail(loop, breaker, 7, 2)
    assert allowed(loop, breaker, 7)
    fail(loop, breaker, 7, 1)  # three within the window now
    assert not allowed(loop, breaker, 7)


def test_a_success_ends_a_run_of_failures_in_every_process(kind, loop):
    # A deployment failing some requests while it answers the others is not cut off: only failures
    # in a row open the breaker, wherever they happen.
    first, second = CircuitBreaker(POLICY), CircuitBreaker(POLICY)
    other = second if kind == "redis" else first
    for _ in range(5):
        fail(loop, first, 7, 2)
        assert allowed(loop, other, 7)  # (this process now knows of the run, as after a sync)
        loop.run(other.record(7, ok=True))
    assert allowed(loop, first, 7)
    fail(loop, first, 7, 2)
    fail(loop, other, 7, 1)  # the third in a row, from another process
    assert not allowed(loop, first, 7) and not allowed(loop, other, 7)


def test_a_success_costs_nothing_while_no_run_of_failures_is_going(kind, loop, monkeypatch):
    breaker = CircuitBreaker(POLICY)
    assert allowed(loop, breaker, 7)
    store_calls: list[str] = []
    original = CircuitBreaker._call

    async def counted(self: CircuitBreaker, method: str, *args: Any, **kwargs: Any) -> Any:
        store_calls.append(method)
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(CircuitBreaker, "_call", counted)
    for _ in range(20):
        loop.run(breaker.record(7, ok=True))
    assert store_calls == []
    fail(loop, breaker, 7, 1)
    loop.run(breaker.record(7, ok=True))
    loop.run(breaker.record(7, ok=True))
    assert store_calls == ["failed", "succeeded"]


def test_after_the_cooldown_exactly_one_call_probes_across_processes(kind, loop):
    first, second = CircuitBreaker(POLICY), CircuitBreaker(POLICY)
    fail(loop, first, 7, 3)
    assert not allowed(loop, second if kind == "redis" else first, 7)
    time.sleep(COOLDOWN + 0.05)
    breakers = [first, second] if kind == "redis" else [first]

    async def many() -> list[bool]:
        return list(await asyncio.gather(*(breakers[i % len(breakers)].allow(7) for i in range(30))))

    assert sum(loop.run(many())) == 1
    assert not allowed(loop, first, 7)  # the probe is under way: still no traffic


def test_a_successful_probe_closes_it_for_everyone(kind, loop):
    first, second = CircuitBreaker(POLICY), CircuitBreaker(POLICY)
    fail(loop, first, 7, 3)
    time.sleep(COOLDOWN + 0.05)
    prober = second if kind == "redis" else first
    assert allowed(loop, prober, 7)
    loop.run(prober.record(7, ok=True))
    assert allowed(loop, first, 7) and allowed(loop, prober, 7)
    # Closed means closed afresh: it takes the full count of failures to open it again.
    fail(loop, first, 7, 2)
    assert allowed(loop, first, 7)


def test_a_failed_probe_opens_it_again_for_another_cooldown(kind, loop):
    breaker = CircuitBreaker(POLICY)
    fail(loop, breaker, 7, 3)
    time.sleep(COOLDOWN + 0.05)
    assert allowed(loop, breaker, 7)
    fail(loop, breaker, 7, 1)
    assert not allowed(loop, breaker, 7)
    time.sleep(COOLDOWN / 2)
    assert not allowed(loop, breaker, 7)
    time.sleep(COOLDOWN / 2 + 0.05)
    assert allowed(loop, breaker, 7)  # the next probe


def test_failures_reported_while_it_is_open_change_nothing(kind, loop):
    # Calls let through before it opened may still report: they must not extend the cooldown.
    breaker = CircuitBreaker(POLICY)
    fail(loop, breaker, 7, 3)
    time.sleep(COOLDOWN / 2)
    fail(loop, breaker, 7, 5)
    time.sleep(COOLDOWN / 2 + 0.05)
    assert allowed(loop, breaker, 7)


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown(kind, loop):
    first, second = CircuitBreaker(POLICY), CircuitBreaker(POLICY)
    fail(loop, first, 7, 3)
    time.sleep(COOLDOWN + 0.05)
    assert allowed(loop, first, 7)  # ... and its process dies without a word
    other = second if kind == "redis" else first
    assert not allowed(loop, other, 7)
    time.sleep(COOLDOWN + 0.05)
    assert allowed(loop, other, 7)
    loop.run(other.record(7, ok=True))
    assert allowed(loop, first, 7)


def test_each_transition_is_logged_once_and_counted(kind, loop, caplog):
    deployment = 9000 + (kind == "redis")
    before = {state: transitions(deployment, state) for state in ("open", "half_open", "closed")}
    breaker = CircuitBreaker(POLICY)
    with caplog.at_level(logging.INFO, logger="gateway.breaker"):
        fail(loop, breaker, deployment, 3)
        for _ in range(5):
            assert not allowed(loop, breaker, deployment)
        fail(loop, breaker, deployment, 2)  # while open: no transition
        time.sleep(COOLDOWN + 0.05)
        assert allowed(loop, breaker, deployment)
        assert not allowed(loop, breaker, deployment)
        fail(loop, breaker, deployment, 1)  # the probe fails
        time.sleep(COOLDOWN + 0.05)
        assert allowed(loop, breaker, deployment)
        loop.run(breaker.record(deployment, ok=True))  # the probe succeeds
        for _ in range(5):
            assert allowed(loop, breaker, deployment)
            loop.run(breaker.record(deployment, ok=True))
    lines = [
        (record.levelname, record.getMessage())
        for record in caplog.records
        if record.name == "gateway.breaker" and f"deployment {deployment} " in record.getMessage()
    ]
    assert [(level, message.split(":")[0].rsplit(" ", 1)[-1]) for level, message in lines] == [
        ("WARNING", "open"),
        ("INFO", "half-open"),
        ("WARNING", "again"),
        ("INFO", "half-open"),
        ("INFO", "closed"),
    ]
    assert "3 failures in a row within 0.6 s" in lines[0][1]
    after = {state: transitions(deployment, state) - before[state] for state in before}
    assert after == {"open": 2, "half_open": 2, "closed": 1}


@needs_redis
def test_a_breaker_opened_by_another_process_is_seen_within_the_sync_interval(loop):
    here, there = CircuitBreaker(POLICY), CircuitBreaker(POLICY)
    assert allowed(loop, here, 7)  # here has synced: its copy says closed
    fail(loop, there, 7, 3)
    started = time.monotonic()
    while allowed(loop, here, 7):
        assert time.monotonic() - started < breaker_module.SYNC_SECONDS + 0.5
        time.sleep(0.02)
    assert sync_client().hexists(open_key(), "7")


@needs_redis
def test_with_redis_unreachable_each_process_keeps_its_own_breakers_and_says_so_once(loop, settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    breaker = CircuitBreaker(POLICY)
    with caplog.at_level(logging.WARNING, logger="gateway.breaker"):
        assert allowed(loop, breaker, 7)
        fail(loop, breaker, 7, 3)
        assert not allowed(loop, breaker, 7)
        assert allowed(loop, breaker, 8)
    unreachable = [record for record in caplog.records if "Redis unreachable" in record.getMessage()]
    assert len(unreachable) == 1


@needs_redis
def test_a_hung_redis_holds_a_call_up_for_one_short_timeout_at_most(loop, settings, caplog):
    from tests.support.process import SilentServer

    with SilentServer() as hung:
        settings.REDIS_URL = hung.url
        breaker = CircuitBreaker(POLICY)
        took = []
        with caplog.at_level(logging.WARNING, logger="gateway.breaker"):
            for _ in range(5):
                started = time.monotonic()
                assert allowed(loop, breaker, 7)
                took.append(time.monotonic() - started)
        loop.run(close_async_client())
    assert took[0] < settings.TOLLHOUSE_REDIS_TIMEOUT + 0.2  # not the governor's longer timeout
    assert max(took[1:]) < 0.05  # decided in-process until Redis is tried again
    assert sum("Redis unreachable" in record.getMessage() for record in caplog.records) == 1


# -- two real processes ---------------------------------------------------------------------------------

_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    import django
    django.setup()
    from gateway.breaker import CircuitBreaker, Policy

    action, deployment, at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    async def main():
        breaker = CircuitBreaker(Policy(failures=3, window_us=10_000_000, cooldown_us=4_000_000))
        time.sleep(max(at - time.time(), 0))  # start together
        if action == "fail":
            for _ in range(3):
                await breaker.record(deployment, ok=False)
            print("allowed" if await breaker.allow(deployment) else "refused")
        elif action == "probe":
            # The probe (if this process gets it) is not reported: whoever starts late must not
            # find the breaker closed already.
            print(sum([await breaker.allow(deployment) for _ in range(5)]))

    asyncio.run(main())
    """
)


@needs_redis
@pytest.mark.django_db
def test_two_processes_agree_on_the_state_and_on_the_one_probe(loop):
    from tests.support.process import subprocess_env

    env = subprocess_env(
        settings_dict=django_settings.DATABASES["default"],
        redis_url=str(django_settings.REDIS_URL),
        DJANGO_SETTINGS_MODULE="config.settings",
    )

    def run_both(action: str, at: float) -> list[str]:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, action, "42", str(at)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            outputs.append(out.strip().splitlines()[-1])
        return outputs

    # Both fail three times at once: the breaker opens once (six failures, one transition), and
    # each process, and this one, sees it open.
    at = time.time() + 6.0  # both interpreters are up by then, on a loaded machine too
    assert run_both("fail", at) == ["refused", "refused"]
    here = CircuitBreaker(Policy(failures=3, window_us=10_000_000, cooldown_us=4_000_000))
    assert not allowed(loop, here, 42)
    time.sleep(max(at + 4.2 - time.time(), 0))
    # After the cooldown both try five times at once: one call of the ten is the probe.
    assert sorted(run_both("probe", time.time() + 6.0)) == ["0", "1"]
    assert not allowed(loop, here, 42)  # the probe is under way
    # It never reports (its process is gone): after its lease (a cooldown) this process probes, and
    # its success closes the breaker for everyone.
    time.sleep(4.1)
    assert allowed(loop, here, 42)
    loop.run(here.record(42, ok=True))
    assert allowed(loop, here, 42) and not sync_client().hexists(open_key(), "42")
