"""A circuit breaker per deployment: a deployment that keeps failing is cooled down, then probed.

States of one deployment's breaker:
- closed: calls go through. TOLLHOUSE_BREAKER_FAILURES failed attempts in a row (no success between
  them, in any process) within TOLLHOUSE_BREAKER_WINDOW_SECONDS of the first open it. A success ends
  the run: a deployment that fails some requests (a prompt it cannot take, a 500 for one payload)
  while it answers the others is not cut off for everyone.
- open: `allow` says no for TOLLHOUSE_BREAKER_COOLDOWN_SECONDS.
- half-open: the cooldown is over; exactly ONE call (the probe) is let through, across every gateway
  process. Its success closes the breaker, its failure opens it again for another cooldown. A probe
  that never reports (its process died, its client left) holds the half-open state for one cooldown,
  then another call becomes the probe.

Where the state lives follows the governor's switch (gateway/governor.py): with REDIS_URL, in
Redis, changed only by Lua scripts (atomic across processes; times from Redis `TIME`), so every
process agrees; without it (the embedded default: one process), in this process. When Redis is
configured but unreachable, each process keeps its own breakers until Redis answers again (a
breaker only ever holds traffic back, so deciding alone is safe), logged once each way.

Cost on the hot path: `allow` reads this process's copy of the open breakers (and of the deployments
with a run of failures going), refreshed from Redis at most every `SYNC_SECONDS` (one round trip, by
one call); only a deployment whose cooldown is over asks Redis for the probe. `record(ok=True)` costs
nothing unless that deployment has a run of failures going (then one round trip ends it); failures
and the probe's outcome cost one round trip each. So a breaker opened by another process is seen
here within `SYNC_SECONDS`; the calls that reach it meanwhile fail over as they would have anyway.

Each transition is logged once (by the process that made it) and counted in
`tollhouse_breaker_transitions_total{deployment, state}`; `/metrics` shows the breakers open or
half-open now in `tollhouse_breakers_open` (config/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from config.hot import hot
from config.redis import redis_key
from gateway import metrics
from gateway.governor import LuaScript

logger = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
SYNC_SECONDS = 1.0  # how stale this process's copy of the open breakers may be (Redis)
REDIS_RETRY_SECONDS = 5.0  # after Redis failed, how long the breakers stay local before trying again


def _micros(seconds: float) -> int:
    return int(seconds * 1_000_000)


@dataclass(frozen=True)
class Policy:
    failures: int
    window_us: int
    cooldown_us: int

    @classmethod
    def from_settings(cls) -> Policy:
        return cls(
            failures=hot.TOLLHOUSE_BREAKER_FAILURES,
            window_us=_micros(hot.TOLLHOUSE_BREAKER_WINDOW_SECONDS),
            cooldown_us=_micros(hot.TOLLHOUSE_BREAKER_COOLDOWN_SECONDS),
        )


@dataclass(frozen=True)
class Outcome:
    """What a store says after a change: the state now, whether this change made it (a transition
    to log), and for an open breaker how long it stays open (µs; 0 or less: half-open)."""

    state: str
    transition: bool = False
    remaining_us: int = 0


class Store(Protocol):
    name: str

    async def failed(self, deployment: int, policy: Policy, *, probe: str) -> Outcome: ...

    async def probe_succeeded(self, deployment: int, *, probe: str) -> bool: ...

    async def succeeded(self, deployment: int) -> None: ...

    async def try_probe(self, deployment: int, policy: Policy, *, token: str) -> tuple[str, int]: ...

    async def open_breakers(self) -> tuple[dict[int, int], set[int]]: ...


# -- in-process ---------------------------------------------------------------------------------------


@dataclass
class _Local:
    failures: int = 0  # in the current run (no success since the first of them)
    first_failure: int = 0
    open_until: int | None = None
    probe: str = ""
    probe_until: int = 0


class LocalStore:
    """The breakers of this process only (the embedded default; Redis unreachable)."""

    name = "local"

    def __init__(self) -> None:
        self.breakers: dict[int, _Local] = {}

    @staticmethod
    def _now() -> int:
        return time.monotonic_ns() // 1000

    async def failed(self, deployment: int, policy: Policy, *, probe: str) -> Outcome:
        now = self._now()
        breaker = self.breakers.setdefault(deployment, _Local())
        if breaker.open_until is not None:
            if probe and breaker.probe == probe:
                breaker.open_until, breaker.probe = now + policy.cooldown_us, ""
                return Outcome(OPEN, True, policy.cooldown_us)
            return Outcome(OPEN, False, breaker.open_until - now)
        if breaker.failures == 0 or now - breaker.first_failure > policy.window_us:
            breaker.failures, breaker.first_failure = 0, now  # a new run
        breaker.failures += 1
        if breaker.failures >= policy.failures:
            breaker.failures = 0
            breaker.open_until = now + policy.cooldown_us
            return Outcome(OPEN, True, policy.cooldown_us)
        return Outcome(CLOSED)

    async def succeeded(self, deployment: int) -> None:
        breaker = self.breakers.get(deployment)
        if breaker is not None:
            breaker.failures = 0
            if breaker.open_until is None and not breaker.probe:
                del self.breakers[deployment]

    async def probe_succeeded(self, deployment: int, *, probe: str) -> bool:
        breaker = self.breakers.get(deployment)
        if breaker is None or breaker.open_until is None:
            return False
        if breaker.probe and breaker.probe != probe and breaker.probe_until > self._now():
            return False  # a newer probe is under way: its outcome decides
        del self.breakers[deployment]
        return True

    async def try_probe(self, deployment: int, policy: Policy, *, token: str) -> tuple[str, int]:
        now = self._now()
        breaker = self.breakers.get(deployment)
        if breaker is None or breaker.open_until is None:
            return CLOSED, 0
        if breaker.open_until > now:
            return OPEN, breaker.open_until - now
        if breaker.probe and breaker.probe_until > now:
            return "wait", breaker.probe_until - now
        breaker.probe, breaker.probe_until = token, now + policy.cooldown_us
        return "probe", 0

    async def open_breakers(self) -> tuple[dict[int, int], set[int]]:
        now = self._now()
        opened = {
            deployment: breaker.open_until - now
            for deployment, breaker in self.breakers.items()
            if breaker.open_until is not None
        }
        failing = {deployment for deployment, breaker in self.breakers.items() if breaker.failures}
        return opened, failing


# -- Redis --------------------------------------------------------------------------------------------

_PRELUDE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.0f', x) end
"""

# KEYS: open hash, failures hash, probe key. ARGV: id, failures, window µs, cooldown µs, probe token
# ('' if this call was not the probe). The failures hash holds each deployment's current run of
# failures as "<count>:<time of the first>".
_FAILED = (
    _PRELUDE
    + """
local open_key, fails_key, probe_key = KEYS[1], KEYS[2], KEYS[3]
local id, limit, window, cooldown = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local probe = ARGV[5]
local open_until = redis.call('HGET', open_key, id)
if open_until then
  if probe ~= '' and redis.call('GET', probe_key) == probe then
    redis.call('HSET', open_key, id, fmt(now + cooldown))
    redis.call('DEL', probe_key)
    return {'open', 1, fmt(cooldown)}
  end
  return {'open', 0, fmt(tonumber(open_until) - now)}
end
local count, first = 0, now
local run = redis.call('HGET', fails_key, id)
if run then
  local c, f = string.match(run, '^(%d+):(%d+)$')
  if c and now - tonumber(f) <= window then count, first = tonumber(c), tonumber(f) end
end
count = count + 1
if count >= limit then
  redis.call('HDEL', fails_key, id)
  redis.call('HSET', open_key, id, fmt(now + cooldown))
  return {'open', 1, fmt(cooldown)}
end
redis.call('HSET', fails_key, id, count .. ':' .. fmt(first))
return {'closed', 0, '0'}
"""
)

# KEYS: open hash, failures hash, probe key. ARGV: id, probe token ('' if this call was not the
# probe). A success ends the deployment's run of failures; the probe's closes the breaker, unless a
# newer probe holds it (this one's lease ran out and another call took over). 1: it closed.
_SUCCEEDED = """
local open_key, fails_key, probe_key = KEYS[1], KEYS[2], KEYS[3]
redis.call('HDEL', fails_key, ARGV[1])
if ARGV[2] == '' or not redis.call('HGET', open_key, ARGV[1]) then return 0 end
local holder = redis.call('GET', probe_key)
if holder and holder ~= ARGV[2] then return 0 end
redis.call('HDEL', open_key, ARGV[1])
redis.call('DEL', probe_key)
return 1
"""

# KEYS: open hash, probe key. ARGV: id, probe token, probe lease (ms).
_TRY_PROBE = (
    _PRELUDE
    + """
local open_until = redis.call('HGET', KEYS[1], ARGV[1])
if not open_until then return {'closed', '0'} end
local remaining = tonumber(open_until) - now
if remaining > 0 then return {'open', fmt(remaining)} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'probe', '0'} end
return {'wait', fmt(redis.call('PTTL', KEYS[2]) * 1000)}
"""
)

# KEYS: open hash, failures hash. Every open (or half-open) breaker and how long it stays open, by
# Redis's clock; and the deployments with a run of failures going.
_OPEN_BREAKERS = (
    _PRELUDE
    + """
local all = redis.call('HGETALL', KEYS[1])
local opened = {}
for i = 1, #all, 2 do
  opened[#opened + 1] = all[i]
  opened[#opened + 1] = fmt(tonumber(all[i + 1]) - now)
end
return {opened, redis.call('HKEYS', KEYS[2])}
"""
)


def open_key() -> str:
    return redis_key("breaker", "open")


def fails_key() -> str:
    return redis_key("breaker", "fails")


def _probe_key(deployment: int) -> str:
    return redis_key("breaker", "probe", str(deployment))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    """The breakers of every process, in Redis."""

    name = "redis"

    def __init__(self) -> None:
        self._failed = LuaScript(_FAILED)
        self._succeeded = LuaScript(_SUCCEEDED)
        self._try_probe = LuaScript(_TRY_PROBE)
        self._open_breakers = LuaScript(_OPEN_BREAKERS)

    async def failed(self, deployment: int, policy: Policy, *, probe: str) -> Outcome:
        state, transition, remaining = await self._failed(
            keys=[open_key(), fails_key(), _probe_key(deployment)],
            args=[str(deployment), policy.failures, policy.window_us, policy.cooldown_us, probe],
        )
        return Outcome(_text(state), bool(int(transition)), int(_text(remaining)))

    async def probe_succeeded(self, deployment: int, *, probe: str) -> bool:
        closed = await self._succeeded(
            keys=[open_key(), fails_key(), _probe_key(deployment)], args=[str(deployment), probe]
        )
        return bool(int(closed))

    async def succeeded(self, deployment: int) -> None:
        await self._succeeded(
            keys=[open_key(), fails_key(), _probe_key(deployment)], args=[str(deployment), ""]
        )

    async def try_probe(self, deployment: int, policy: Policy, *, token: str) -> tuple[str, int]:
        lease_ms = max(policy.cooldown_us // 1000, 1)
        state, remaining = await self._try_probe(
            keys=[open_key(), _probe_key(deployment)], args=[str(deployment), token, lease_ms]
        )
        return _text(state), int(_text(remaining))

    async def open_breakers(self) -> tuple[dict[int, int], set[int]]:
        flat, failing = await self._open_breakers(keys=[open_key(), fails_key()], args=[])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        opened = {int(_text(deployment)): int(_text(remaining)) for deployment, remaining in pairs}
        return opened, {int(_text(deployment)) for deployment in failing}


# -- the breaker ----------------------------------------------------------------------------------------


class CircuitBreaker:
    """What the executor asks before an attempt (`allow`) and tells after it (`record`)."""

    def __init__(self, policy: Policy | None = None) -> None:
        self._policy = policy
        self.local = LocalStore()
        self._redis: RedisStore | None = None
        self._redis_down_until = 0.0
        # This process's copy of the open breakers: deployment -> monotonic time it stays open until.
        self._open: dict[int, float] = {}
        self._synced_at = -float("inf")
        self._syncing = False
        self._failing: set[int] = set()  # deployments with a run of failures going (a success ends it)
        self._probes: dict[int, str] = {}  # deployment -> the probe token this process holds
        self._waiting: dict[int, float] = {}  # another process probes: ask again after this time

    @property
    def policy(self) -> Policy:
        return self._policy or Policy.from_settings()

    def _store(self) -> Store:
        if not hot.REDIS_URL or time.monotonic() < self._redis_down_until:
            return self.local
        if self._redis is None:
            self._redis = RedisStore()
        return self._redis

    def _redis_failed(self, exc: Exception) -> None:
        if self._redis_down_until == 0.0:
            logger.warning(
                "circuit breakers: Redis unreachable (%s); each process keeps its own breakers until it "
                "answers again",
                type(exc).__name__,
            )
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS

    def _redis_answered(self, store: Store) -> None:
        if store is self._redis and self._redis_down_until:
            self._redis_down_until = 0.0
            self.local = LocalStore()  # what this process decided alone is not the shared state
            logger.warning("circuit breakers: Redis reachable again; breakers are shared again")

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        store = self._store()
        try:
            # A breaker's answer is not worth holding a call up for: a Redis slower than the usage
            # sink allows (TOLLHOUSE_REDIS_TIMEOUT) counts as unreachable, and this process decides
            # alone for a while. (TimeoutError is an OSError.)
            async with asyncio.timeout(None if store is self.local else hot.TOLLHOUSE_REDIS_TIMEOUT):
                result = await getattr(store, method)(*args, **kwargs)
        except (redis.RedisError, OSError) as exc:
            if store is self.local:
                raise
            self._redis_failed(exc)
            return await getattr(self.local, method)(*args, **kwargs)
        self._redis_answered(store)
        return result

    async def _sync(self) -> None:
        """Refresh this process's copy of the open breakers (from Redis at most every SYNC_SECONDS)."""
        now = time.monotonic()
        remote = self._store() is not self.local
        if (remote and now - self._synced_at < SYNC_SECONDS) or self._syncing:
            return
        self._syncing = True
        try:
            breakers, failing = await self._call("open_breakers")
        finally:
            self._syncing = False
        now = time.monotonic()
        self._synced_at = now
        self._open = {deployment: now + remaining / 1_000_000 for deployment, remaining in breakers.items()}
        self._failing = failing

    async def cooling(self) -> set[int]:
        """The deployments in cooldown now (their breaker open, or another process probing them),
        as this process knows them: routing skips them (gateway/routing.py)."""
        await self._sync()
        if not self._open:
            return set()
        now = time.monotonic()
        return {
            deployment
            for deployment, open_until in self._open.items()
            if now < open_until or now < self._waiting.get(deployment, 0.0)
        }

    def cooldown_left(self, deployments: Iterable[int]) -> float:
        """Seconds until the first of these deployments may be tried again (0: one may now)."""
        now = time.monotonic()
        waits = [
            max(self._open.get(deployment, now), self._waiting.get(deployment, now)) - now
            for deployment in deployments
        ]
        return max(min(waits, default=0.0), 0.0)

    async def allow(self, deployment_id: int | None) -> bool:
        """May an attempt go to this deployment now? False while its breaker is open; True for the
        one probe of a half-open breaker (this process then holds it until `record`)."""
        if deployment_id is None:
            return True
        await self._sync()
        open_until = self._open.get(deployment_id)
        if open_until is None:
            return True
        now = time.monotonic()
        if now < open_until or now < self._waiting.get(deployment_id, 0.0):
            return False
        token = uuid.uuid4().hex
        state, remaining_us = await self._call("try_probe", deployment_id, self.policy, token=token)
        now = time.monotonic()
        if state == CLOSED:
            self._open.pop(deployment_id, None)
            return True
        if state == OPEN:
            self._open[deployment_id] = now + remaining_us / 1_000_000
            return False
        if state == "probe":
            self._probes[deployment_id] = token
            self._transition(deployment_id, HALF_OPEN)
            return True
        # Another process holds the probe: ask again when its lease ends, or at the next sync.
        self._waiting[deployment_id] = now + min(max(remaining_us, 0) / 1_000_000, SYNC_SECONDS)
        return False

    async def record(self, deployment_id: int | None, *, ok: bool) -> None:
        """The outcome of an attempt `allow` let through. Failures are what says the deployment is
        unwell (no connection, a timeout, a 5xx, a 429), not a refusal of the request itself."""
        if deployment_id is None:
            return
        probe = self._probes.pop(deployment_id, "")
        if ok:
            if probe:
                self._failing.discard(deployment_id)
                if await self._call("probe_succeeded", deployment_id, probe=probe):
                    self._open.pop(deployment_id, None)
                    self._waiting.pop(deployment_id, None)
                    self._transition(deployment_id, CLOSED)
            elif deployment_id in self._failing:
                self._failing.discard(deployment_id)
                await self._call("succeeded", deployment_id)
            return
        self._failing.add(deployment_id)
        outcome: Outcome = await self._call("failed", deployment_id, self.policy, probe=probe)
        if outcome.state == OPEN:
            self._open[deployment_id] = time.monotonic() + outcome.remaining_us / 1_000_000
        if outcome.transition:
            self._transition(deployment_id, OPEN, reopened=bool(probe))

    def _transition(self, deployment_id: int, state: str, *, reopened: bool = False) -> None:
        policy = self.policy
        cooldown = policy.cooldown_us / 1_000_000
        if state == OPEN and reopened:
            logger.warning(
                "circuit breaker of deployment %s open again: its probe failed; next probe in %g s",
                deployment_id,
                cooldown,
            )
        elif state == OPEN:
            logger.warning(
                "circuit breaker of deployment %s open: %s failures in a row within %g s; no traffic for "
                "%g s, then one probe",
                deployment_id,
                policy.failures,
                policy.window_us / 1_000_000,
                cooldown,
            )
        elif state == HALF_OPEN:
            logger.info(
                "circuit breaker of deployment %s half-open: one probe call goes through", deployment_id
            )
        else:
            logger.info("circuit breaker of deployment %s closed: its probe succeeded", deployment_id)
        metrics.breaker_transition(deployment_id, state)

    def local_open_count(self) -> int:
        """Breakers open or half-open in this process's own store (embedded mode: all of them)."""
        return sum(1 for breaker in self.local.breakers.values() if breaker.open_until is not None)


# -- what the operator console reads ------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerView:
    """A breaker that holds traffic back now: open (cooling down for `remaining_seconds` more) or
    half-open (its cooldown is over: the next call, in any process, is its probe)."""

    deployment_id: int
    state: str  # OPEN or HALF_OPEN
    remaining_seconds: float  # 0 when half-open


@dataclass(frozen=True)
class BreakerStates:
    shared: bool  # True: read from Redis (every process's); False: this process's own (embedded)
    breakers: list[BreakerView]
    failing: set[int]  # deployments with a run of failures going (not yet enough to open)


def _views(opened: dict[int, int]) -> list[BreakerView]:
    return sorted(
        (
            BreakerView(deployment, OPEN if remaining > 0 else HALF_OPEN, max(remaining, 0) / 1_000_000)
            for deployment, remaining in opened.items()
        ),
        key=lambda view: (view.state != OPEN, -view.remaining_seconds, view.deployment_id),
    )


def breaker_states() -> BreakerStates:
    """Every breaker open or half-open now, by Redis's clock (blocking: for the operator console,
    not the hot path). Without REDIS_URL the breakers are this process's (the embedded default runs
    the console and the gateway in one process). A Redis error propagates: the caller says so."""
    if not hot.REDIS_URL:
        from gateway.runtime import runtime

        local = runtime.breaker.local
        now = LocalStore._now()
        opened = {
            deployment: breaker.open_until - now
            for deployment, breaker in local.breakers.items()
            if breaker.open_until is not None
        }
        failing = {deployment for deployment, breaker in local.breakers.items() if breaker.failures}
        return BreakerStates(shared=False, breakers=_views(opened), failing=failing)
    from config.redis import sync_client

    client = sync_client()
    try:
        pipe = client.pipeline(transaction=True)  # one instant: MULTI/EXEC
        pipe.hgetall(open_key())
        pipe.hkeys(fails_key())
        pipe.time()
        raw_open, raw_failing, (seconds, micros) = pipe.execute()
    finally:
        client.close()
    now = int(seconds) * 1_000_000 + int(micros)
    opened = {int(_text(key)): int(float(_text(value))) - now for key, value in raw_open.items()}
    return BreakerStates(
        shared=True, breakers=_views(opened), failing={int(_text(key)) for key in raw_failing}
    )
