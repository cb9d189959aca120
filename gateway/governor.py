"""Step 4 and the governance half of step 8: rate limits, concurrency, budgets and credits.

Admission is ONE Redis round trip (a Lua script, so every check and every change is atomic across
all gateway processes); settlement is one more, and it also appends the call's usage event to the
stream, so the counters and the ledger's input can never disagree (billing/reconcile.py relies on
that to re-derive counters exactly).

Rate limits use GCRA (the generic cell rate algorithm), not a sliding window:
- it keeps ONE number per limit (the theoretical arrival time, TAT), where a sliding-window log keeps
  a sorted-set entry per request (10,000 rpm = 10,000 members to trim on every call), and a
  sliding-window counter is an approximation that can admit more or fewer than N at window edges;
- a limit of N per minute admits a burst of exactly N, then one every 60/N s: what "N requests per
  minute" promises, and exact under any concurrency because the script runs atomically;
- it needs no clean-up: the key expires when its TAT is in the past.
Times come from Redis (`TIME`), so the clocks of the gateway hosts do not matter. Emission
intervals are whole microseconds (ceil(60 s / N)), so a burst of N is exact in integer arithmetic.
Tokens per minute are counted on the tokens actually used: admission lets a call in while the
window is not used up, settlement adds what the call used (OpenAI's own behaviour for tokens is to
count `max_tokens` up front; the issue asks for actual usage, which never refuses a call for tokens
it did not use).

Concurrency is a sorted set of the calls in flight, scored by a lease expiry: a process that dies
mid-call leaves a member that expires (TOLLHOUSE_LEASE_SECONDS) instead of a counter stuck forever.

Budgets and credits are pots (billing/pots.py): admission reserves the worst case the call can cost
against every hard pot that applies, or, when what is left pays for the prompt but not the worst
case, lowers the call's output tokens to what it pays for; settlement replaces the reservation with
the real cost. Reservations carry the same lease, so a dead process's reservation expires too.

Numbers in Lua are doubles: integers are exact below 2**53, i.e. nano-dollar counters up to about
9 million USD per pot, and microsecond times for the next 200 years.

Without Redis (the embedded default) `LocalGovernor` applies the same rules in-process. With Redis
configured but unreachable, TOLLHOUSE_REDIS_FAILURE chooses: `closed` refuses calls with 503, `open`
governs each process on its own (`LocalGovernor`) until Redis answers again. Either way the change
is logged once, in each direction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import redis

from billing import pots as pot_store
from billing.periods import window
from config import resp
from config.hot import hot
from config.redis import governor_client, redis_key
from gateway import errors
from gateway.auth import KeyInfo, Limits
from gateway.db import run_db

logger = logging.getLogger(__name__)

WINDOW_US = 60_000_000

# -- the scripts ------------------------------------------------------------------------------------

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local WINDOW = 60000000
local function fmt(x) return string.format('%.0f', x) end
local function interval(limit) return math.ceil(WINDOW / limit) end
local function tat_of(key)
  local v = tonumber(redis.call('GET', key) or '0')
  if v < now then return now end
  return v
end

local rid, lease = ARGV[1], tonumber(ARGV[2])
local n_rate, n_dep, n_pots = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local prompt_cost, per_token, want = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local max_cost, busy = tonumber(ARGV[9]), tonumber(ARGV[10])
local k, a = 1, 11
local req, tok = nil, nil
local sets, conc_adds = {}, {}

for i = 1, n_rate do
  local rpm_key, tpm_key, conc_key = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local rpm, tpm, conc, name = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
  k = k + 3
  a = a + 4
  if rpm > 0 then
    local T = interval(rpm)
    local tat = tat_of(rpm_key)
    local burst = (rpm - 1) * T
    if tat - now > burst then
      return {'rate', 'requests', name, rpm, fmt(tat - now - burst)}
    end
    local new = tat + T
    table.insert(sets, {rpm_key, new})
    local remaining = math.floor((rpm * T - (new - now)) / T)
    if req == nil or remaining < req[2] then req = {rpm, remaining, new - now} end
  end
  if tpm > 0 then
    local T = interval(tpm)
    local used = tat_of(tpm_key) - now
    if used >= tpm * T then
      return {'rate', 'tokens', name, tpm, fmt(used - tpm * T + T)}
    end
    local remaining = math.floor((tpm * T - used) / T)
    if tok == nil or remaining < tok[2] then tok = {tpm, remaining, used} end
  end
  if conc > 0 then
    -- Leases past their time (a process that died mid-call) are purged only when they could
    -- refuse this call: one command in the common case instead of two.
    if redis.call('ZCARD', conc_key) >= conc then
      redis.call('ZREMRANGEBYSCORE', conc_key, '-inf', now)
      if redis.call('ZCARD', conc_key) >= conc then
        return {'concurrency', name, conc}
      end
    end
    table.insert(conc_adds, conc_key)
  end
end

-- The deployments, in the route's order: the first with room is chosen; with `busy` (a least_busy
-- route), the one with room and the fewest calls in flight (its sorted set of leases, as for
-- concurrency), the first of those on a tie. None with room: refused with the soonest wait.
local chosen, fewest, chosen_set, chosen_busy, soonest = -1, nil, nil, nil, nil
for j = 1, n_dep do
  local rpm_key, tpm_key = KEYS[k], KEYS[k + 1]
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local busy_key = nil
  k = k + 2
  a = a + 2
  if busy == 1 then
    busy_key = KEYS[k]
    k = k + 1
  end
  if chosen < 0 or busy_key then
    local wait, set = nil, nil
    if rpm > 0 then
      local T = interval(rpm)
      local tat = tat_of(rpm_key)
      if tat - now > (rpm - 1) * T then
        wait = {'requests', rpm, tat - now - (rpm - 1) * T}
      else
        set = {rpm_key, tat + T}
      end
    end
    if not wait and tpm > 0 then
      local T = interval(tpm)
      local used = tat_of(tpm_key) - now
      if used >= tpm * T then
        wait = {'tokens', tpm, used - tpm * T + T}
      end
    end
    if wait then
      if soonest == nil or wait[3] < soonest[3] then soonest = wait end
    else
      local load = 0
      if busy_key then
        redis.call('ZREMRANGEBYSCORE', busy_key, '-inf', now)
        load = redis.call('ZCARD', busy_key)
      end
      if chosen < 0 or load < fewest then
        chosen, fewest, chosen_set, chosen_busy = j - 1, load, set, busy_key
      end
    end
  end
end
if n_dep > 0 and chosen < 0 then
  return {'rate', soonest[1], 'deployment', soonest[2], fmt(soonest[3])}
end
if chosen_set then table.insert(sets, chosen_set) end
if chosen_busy then table.insert(conc_adds, chosen_busy) end

-- `bounded`: headroom holds a real bound (max cost or a pot's); a pot already overdrawn has a
-- negative one, which must not read as "no bound yet".
local headroom, tight, bounded = max_cost, -1, max_cost >= 0
local missing = {}
local pots_at = k
local dues = {}
for p = 1, n_pots do
  local pot, exp = KEYS[k], KEYS[k + 1]
  local kind, limit = ARGV[a], tonumber(ARGV[a + 1])
  k = k + 2
  a = a + 2
  -- A pot always has `spent` (_INIT_POT): its absence says the pot is missing, no EXISTS needed.
  -- While reservations are held (`reserved` > 0), `due` is no later than the earliest of their
  -- expiries (absent: unknown), so the expired ones are looked for only when one may be; with
  -- none held there is nothing to expire (settlement drops `due` with the last one).
  local h = redis.call('HMGET', pot, 'spent', 'reserved', 'credit', 'due')
  if not h[1] then
    table.insert(missing, p - 1)
  else
    local due = h[4] and tonumber(h[4]) or nil
    if tonumber(h[2] or '0') > 0 and (due == nil or due <= now) then
      local gone = redis.call('ZRANGEBYSCORE', exp, '-inf', now)
      for _, r in ipairs(gone) do
        local amount = redis.call('HGET', pot, 'r:' .. r)
        if amount then
          redis.call('HDEL', pot, 'r:' .. r)
          redis.call('HINCRBY', pot, 'reserved', fmt(-tonumber(amount)))
        end
      end
      if #gone > 0 then redis.call('ZREMRANGEBYSCORE', exp, '-inf', now) end
      local first = redis.call('ZRANGE', exp, 0, 0, 'WITHSCORES')
      if first[2] then
        due = tonumber(first[2])
        redis.call('HSET', pot, 'due', first[2])
      else
        due = nil
        redis.call('HDEL', pot, 'due')
      end
      h = redis.call('HMGET', pot, 'spent', 'reserved', 'credit')
    end
    dues[p] = due
    local cap = limit
    if kind == 'c' then cap = tonumber(h[3] or '0') end
    local available = cap - tonumber(h[1] or '0') - tonumber(h[2] or '0')
    if not bounded or available < headroom then
      headroom, tight, bounded = available, p - 1, true
    end
  end
end
if #missing > 0 then
  return {'init', unpack(missing)}
end

local reserve, capped = 0, -1
if n_pots > 0 or max_cost >= 0 then
  local worst = prompt_cost + want * per_token
  if headroom >= worst then
    reserve = worst
  elseif per_token > 0 and headroom >= prompt_cost + per_token then
    capped = math.floor((headroom - prompt_cost) / per_token)
    reserve = prompt_cost + capped * per_token
  else
    return {'pay', tight, fmt(headroom), fmt(prompt_cost)}
  end
end

for _, s in ipairs(sets) do
  redis.call('SET', s[1], fmt(s[2]), 'PX', math.ceil((s[2] - now) / 1000) + 1000)
end
for _, c in ipairs(conc_adds) do
  redis.call('ZADD', c, fmt(now + lease), rid)
  redis.call('PEXPIRE', c, math.ceil(lease / 1000) + 1000)
end
if reserve > 0 then
  for p = 1, n_pots do
    local pot, exp = KEYS[pots_at + 2 * (p - 1)], KEYS[pots_at + 2 * (p - 1) + 1]
    local due = dues[p]
    if due == nil or due > now + lease then
      redis.call('HSET', pot, 'r:' .. rid, fmt(reserve), 'due', fmt(now + lease))
    else
      redis.call('HSET', pot, 'r:' .. rid, fmt(reserve))
    end
    redis.call('HINCRBY', pot, 'reserved', fmt(reserve))
    redis.call('ZADD', exp, fmt(now + lease), rid)
    redis.call('PEXPIRE', exp, math.ceil(lease / 1000) + 1000)
  end
end
local r1, r2, r3, t1, t2, t3 = -1, -1, '-1', -1, -1, '-1'
if req then r1, r2, r3 = req[1], req[2], fmt(req[3]) end
if tok then t1, t2, t3 = tok[1], tok[2], fmt(tok[3]) end
return {'ok', chosen, fmt(reserve), capped, r1, r2, r3, t1, t2, t3}
"""

_SETTLE = """
local now = nil
local function clock()  -- TIME only when a token counter needs it
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return now
end
local function fmt(x) return string.format('%.0f', x) end
local rid = ARGV[1]
local n_conc, n_tpm, n_pots = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, cost = tonumber(ARGV[5]), tonumber(ARGV[6])
local k, a = 1, 9
for i = 1, n_conc do
  redis.call('ZREM', KEYS[k], rid)
  k = k + 1
end
for i = 1, n_tpm do
  local T = math.ceil(60000000 / tonumber(ARGV[a]))
  a = a + 1
  if tokens > 0 then
    local at = clock()
    local tat = tonumber(redis.call('GET', KEYS[k]) or '0')
    if tat < at then tat = at end
    local new = tat + tokens * T
    redis.call('SET', KEYS[k], fmt(new), 'PX', math.ceil((new - at) / 1000) + 1000)
  end
  k = k + 1
end
for p = 1, n_pots do
  local pot, exp = KEYS[k], KEYS[k + 1]
  k = k + 2
  local h = redis.call('HMGET', pot, 'r:' .. rid, 'spent')
  if h[2] then  -- the pot exists (it always has `spent`)
    local amount = h[1]
    if amount then
      local left = redis.call('HINCRBY', pot, 'reserved', fmt(-tonumber(amount)))
      if left <= 0 then
        redis.call('HDEL', pot, 'r:' .. rid, 'due')  -- no reservation left: nothing to expire
      else
        redis.call('HDEL', pot, 'r:' .. rid)
      end
      redis.call('ZREM', exp, rid)
    end
    if cost > 0 then redis.call('HINCRBY', pot, 'spent', fmt(cost)) end
  end
end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[k], '*', ARGV[8], ARGV[7])
end
return 1
"""

_INIT_POT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', '0', 'credit', ARGV[2], 'meta', ARGV[3])
  if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
  return 1
end
return 0
"""


# -- what admission is asked, and what it leaves for settlement --------------------------------------


@dataclass(frozen=True)
class Subject:
    """Who a rate limit counts: the key, the tenant, one end user or one deployment."""

    name: str  # as messages say it: "API key", "organization", "end user"
    keys: tuple[str, str, str]  # rpm, tpm, concurrency counters
    limits: Limits


@dataclass(frozen=True)
class Pot:
    key: str
    kind: str  # "b": a hard budget, "c": prepaid credits
    limit_nanos: int  # a budget's amount (credits: read from the pot)
    code: str  # the 402's code
    description: str  # "the monthly budget of this organization"
    meta: dict[str, Any]  # what billing.pots needs to create or re-derive it from the database
    ttl_seconds: int

    @property
    def expiry_key(self) -> str:
        return self.key + ":x"


@dataclass
class Request:
    """What a call asks of governance (built by gateway/proxy.py)."""

    request_id: str
    subjects: list[Subject]
    deployments: list[tuple[int, str, str, int | None, int | None]]  # id, rpm key, tpm key, rpm, tpm
    pots: list[Pot]
    prompt_cost: int  # nano-dollars, an upper bound
    per_token: int  # nano-dollars per output token, rounded up
    want_tokens: int  # output tokens the call may write
    max_cost: int | None  # x-tollhouse-max-cost, in nano-dollars
    # A least_busy route: of the deployments with room, the one with the fewest calls in flight is
    # chosen, and the call is marked in flight there (released at settlement, or when it moves on).
    busy: bool = False


@dataclass
class Ticket:
    """What admission took, for settlement to give back or turn into spend."""

    request_id: str
    backend: Any
    concurrency: list[str] = field(default_factory=list)
    tpm: list[tuple[str, int]] = field(default_factory=list)  # counter, limit
    deployment_tpm: dict[int, tuple[str, int]] = field(default_factory=dict)  # by deployment id
    pots: list[Pot] = field(default_factory=list)
    reserved: int = 0
    capped: int | None = None  # output tokens the call was lowered to
    deployment: int = -1  # index of the candidate deployment with room, -1: no deployment limits
    busy: tuple[int, str] | None = None  # (deployment, its in-flight set) the call is counted in
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


def duration(us: float) -> str:
    """How OpenAI writes a reset time: 20ms, 1s, 6m0s."""
    ms = math.ceil(max(us, 0) / 1000)
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _headers(r: list[Any]) -> dict[str, str]:
    headers = {}
    if int(r[0]) >= 0:
        headers["x-ratelimit-limit-requests"] = str(int(r[0]))
        headers["x-ratelimit-remaining-requests"] = str(max(int(r[1]), 0))
        headers["x-ratelimit-reset-requests"] = duration(float(r[2]))
    if int(r[3]) >= 0:
        headers["x-ratelimit-limit-tokens"] = str(int(r[3]))
        headers["x-ratelimit-remaining-tokens"] = str(max(int(r[4]), 0))
        headers["x-ratelimit-reset-tokens"] = duration(float(r[5]))
    return headers


def _refusal(result: list[Any], request: Request) -> errors.GatewayError:
    kind = _text(result[0])
    if kind == "rate":
        which, name, limit = _text(result[1]), _text(result[2]), int(result[3])
        retry = max(1, math.ceil(float(result[4]) / 1_000_000))
        unit = "requests per min (RPM)" if which == "requests" else "tokens per min (TPM)"
        if name == "deployment":
            # Every deployment of the route is at its cap: the soonest of them frees up then.
            message = (
                f"Rate limit reached for every upstream deployment of this model on {unit}: Limit {limit}. "
                f"Please try again in {retry}s."
            )
        else:
            message = (
                f"Rate limit reached for this {name} on {unit}: Limit {limit}. Please try again in {retry}s."
            )
        return errors.RateLimited(
            message,
            type=which,
            headers={
                "Retry-After": str(retry),
                f"x-ratelimit-limit-{which}": str(limit),
                f"x-ratelimit-remaining-{which}": "0",
                f"x-ratelimit-reset-{which}": duration(float(result[4])),
            },
        )
    if kind == "concurrency":
        name, limit = _text(result[1]), int(result[2])
        return errors.RateLimited(
            f"Concurrency limit reached for this {name}: Limit {limit} requests in flight. "
            "Please try again when one of them has finished.",
            type="requests",
            headers={"Retry-After": "1"},
        )
    # "pay": what is left cannot pay for the prompt.
    tight = int(result[1])
    if tight < 0:
        return errors.PaymentRequired(
            "This request could cost more than the x-tollhouse-max-cost you set: "
            "what it allows does not pay for the prompt.",
            code="max_cost_exceeded",
        )
    pot = request.pots[tight]
    if pot.kind == "c":
        return errors.PaymentRequired(
            "Your prepaid credit balance cannot pay for this request. Top up or redeem a code.",
            code="credits_exhausted",
        )
    budget = pot.meta.get("budget")
    return errors.BudgetExceeded(
        f"This request would exceed {pot.description}. It resets when the period ends, "
        "or an administrator can raise it.",
        budget_id=budget if type(budget) is int else None,
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- Redis ----------------------------------------------------------------------------------------------


class LuaScript:
    """A Lua script run by EVALSHA on the running event loop's client, loaded again if Redis lost it
    (a restart, SCRIPT FLUSH). Plainer than redis-py's Script wrapper, which costs more per call."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        url = str(hot.REDIS_URL)
        if resp.supports(url):
            lean = resp.loop_client(url, timeout=hot.TOLLHOUSE_GOVERNOR_REDIS_TIMEOUT)
            try:
                return await lean.call("EVALSHA", self.sha, len(keys), *keys, *args)
            except redis.exceptions.NoScriptError:
                await lean.call("SCRIPT", "LOAD", self.source)
                return await lean.call("EVALSHA", self.sha, len(keys), *keys, *args)
        client = governor_client()  # TLS or a unix socket: redis-py
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await client.script_load(self.source)
            return await client.evalsha(self.sha, len(keys), *keys, *args)

    def send_soon(self, *, keys: list[str], args: list[Any]) -> Coroutine[Any, Any, Any] | None:
        """Run the script with its command queued now (written before a task that yields once
        resumes, see resp.RespClient.send_soon), its reply awaited through what is returned; None
        where that cannot be done (redis-py's URLs, no connection open yet): then the caller awaits
        the script as usual."""
        url = str(hot.REDIS_URL)
        if not resp.supports(url):
            return None
        lean = resp.loop_client(url, timeout=hot.TOLLHOUSE_GOVERNOR_REDIS_TIMEOUT)
        sent = lean.send_soon("EVALSHA", self.sha, len(keys), *keys, *args)
        return None if sent is None else self._reply(lean, sent, keys, args)

    async def _reply(
        self, lean: resp.RespClient, sent: asyncio.Future[Any], keys: list[str], args: list[Any]
    ) -> Any:
        try:
            return await sent
        except redis.exceptions.NoScriptError:
            await lean.call("SCRIPT", "LOAD", self.source)
            return await lean.call("EVALSHA", self.sha, len(keys), *keys, *args)


# A fallback to a deployment admission did not pick: its own rpm / tpm caps checked again (and its
# rpm counted), in one round trip. KEYS: rpm key, tpm key; ARGV: rpm, tpm (0: none). 0: room (and
# counted), else the µs until it has room.
_DEPLOYMENT_ROOM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local WINDOW = 60000000
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local function tat_of(key)
  local v = tonumber(redis.call('GET', key) or '0')
  if v < now then return now end
  return v
end
if tpm > 0 then
  local T = math.ceil(WINDOW / tpm)
  local used = tat_of(KEYS[2]) - now
  if used >= tpm * T then return string.format('%.0f', used - tpm * T + T) end
end
if rpm > 0 then
  local T = math.ceil(WINDOW / rpm)
  local tat = tat_of(KEYS[1])
  if tat - now > (rpm - 1) * T then return string.format('%.0f', tat - now - (rpm - 1) * T) end
  redis.call('SET', KEYS[1], string.format('%.0f', tat + T), 'PX', math.ceil((tat + T - now) / 1000) + 1000)
end
return 0
"""

# A call of a least_busy route moves on to another deployment: its in-flight mark moves with it.
# KEYS: the old set, the new one; ARGV: request id, lease µs.
_BUSY_MOVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local lease = tonumber(ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], string.format('%.0f', now + lease), ARGV[1])
redis.call('PEXPIRE', KEYS[2], math.ceil(lease / 1000) + 1000)
return 1
"""


class RedisBackend:
    name = "redis"

    def __init__(self) -> None:
        self._admit = LuaScript(_ADMIT)
        self._room = LuaScript(_DEPLOYMENT_ROOM)
        self._busy_move = LuaScript(_BUSY_MOVE)
        self._settle = LuaScript(_SETTLE)
        self._init = LuaScript(_INIT_POT)

    async def admit(self, request: Request, lease_us: int) -> Ticket:
        keys: list[str] = []
        args: list[Any] = [
            request.request_id,
            lease_us,
            len(request.subjects),
            len(request.deployments),
            len(request.pots),
            request.prompt_cost,
            request.per_token,
            request.want_tokens,
            -1 if request.max_cost is None else request.max_cost,
            1 if request.busy else 0,
        ]
        for subject in request.subjects:
            keys.extend(subject.keys)
            limits = subject.limits
            args.extend([limits.rpm or 0, limits.tpm or 0, limits.concurrency or 0, subject.name])
        for deployment_id, rpm_key, tpm_key, rpm, tpm in request.deployments:
            keys.extend([rpm_key, tpm_key])
            if request.busy:
                keys.append(busy_key(deployment_id))
            args.extend([rpm or 0, tpm or 0])
        for pot in request.pots:
            keys.extend([pot.key, pot.expiry_key])
            args.extend([pot.kind, pot.limit_nanos])
        for _ in range(3):
            result = await self._admit(keys=keys, args=args)
            if _text(result[0]) != "init":
                break
            for index in result[1:]:
                await self._create_pot(request.pots[int(index)])
        else:
            raise redis.RedisError("budget counters could not be created")
        if _text(result[0]) != "ok":
            raise _refusal(result, request)
        return _ticket(self, request, result)

    async def deployment_wait(self, rpm_key: str, tpm_key: str, rpm: int, tpm: int) -> int:
        return int(_text(await self._room(keys=[rpm_key, tpm_key], args=[rpm, tpm])))

    async def busy_move(self, request_id: str, old: str, new: str, lease_us: int) -> None:
        await self._busy_move(keys=[old, new], args=[request_id, lease_us])

    async def _create_pot(self, pot: Pot) -> None:
        spent, credit = await run_db(lambda: pot_store.derive(pot.meta))
        await self._init(
            keys=[pot.key],
            args=[spent, credit, orjson.dumps(pot.meta).decode(), pot.ttl_seconds],
        )

    async def settle(
        self, ticket: Ticket, *, tokens: int, cost: int, deployment: int | None, event: bytes | None
    ) -> bool:
        keys, args = self._settlement(ticket, tokens=tokens, cost=cost, deployment=deployment, event=event)
        await self._settle(keys=keys, args=args)
        return event is not None

    def settle_sent(
        self, ticket: Ticket, *, tokens: int, cost: int, deployment: int | None, event: bytes | None
    ) -> Coroutine[Any, Any, Any] | None:
        """`settle` with its command queued now; its reply is awaited through what is returned. None
        if the command could not be queued (see LuaScript.send_soon)."""
        keys, args = self._settlement(ticket, tokens=tokens, cost=cost, deployment=deployment, event=event)
        return self._settle.send_soon(keys=keys, args=args)

    def _settlement(
        self, ticket: Ticket, *, tokens: int, cost: int, deployment: int | None, event: bytes | None
    ) -> tuple[list[str], list[Any]]:
        tpm = list(ticket.tpm)
        if deployment is not None and deployment in ticket.deployment_tpm:
            tpm.append(ticket.deployment_tpm[deployment])
        keys = [*ticket.concurrency, *(key for key, _ in tpm)]
        for pot in ticket.pots:
            keys.extend([pot.key, pot.expiry_key])
        args: list[Any] = [
            ticket.request_id,
            len(ticket.concurrency),
            len(tpm),
            len(ticket.pots),
            tokens,
            cost,
            event or b"",
            _stream_field(),
            *(limit for _, limit in tpm),
        ]
        if event is not None:
            keys.append(_stream_key())
        return keys, args


def _stream_key() -> str:
    from billing.usage import stream_key

    return stream_key()


def _stream_field() -> bytes:
    from billing.usage import FIELD

    return FIELD


def _ticket(backend: Any, request: Request, result: list[Any]) -> Ticket:
    ticket = Ticket(request_id=request.request_id, backend=backend)
    for subject in request.subjects:
        if subject.limits.concurrency:
            ticket.concurrency.append(subject.keys[2])
        if subject.limits.tpm:
            ticket.tpm.append((subject.keys[1], subject.limits.tpm))
    for deployment_id, _, tpm_key, _, tpm in request.deployments:
        if tpm:
            ticket.deployment_tpm[deployment_id] = (tpm_key, tpm)
    ticket.deployment = int(result[1])
    if request.busy and ticket.deployment >= 0:
        chosen = request.deployments[ticket.deployment][0]
        ticket.busy = (chosen, busy_key(chosen))
        ticket.concurrency.append(ticket.busy[1])  # released at settlement, like a concurrency slot
    ticket.reserved = int(result[2])
    if ticket.reserved:
        ticket.pots = list(request.pots)
    capped = int(result[3])
    ticket.capped = capped if capped >= 0 else None
    ticket.headers = _headers(result[4:10])
    return ticket


# -- in-process -------------------------------------------------------------------------------------


@dataclass
class _LocalPot:
    spent: int
    credit: int
    reserved: dict[str, tuple[int, int]] = field(default_factory=dict)  # request id -> (amount, expiry)
    loaded_at: float = 0.0


class LocalBackend:
    """The same rules as the scripts, for one process: the embedded default, and fail-open."""

    name = "local"
    CREDIT_REFRESH_SECONDS = 5.0

    def __init__(self) -> None:
        self.tat: dict[str, int] = {}
        self.inflight: dict[str, dict[str, int]] = {}
        self.pots: dict[str, _LocalPot] = {}

    @staticmethod
    def _now() -> int:
        return time.time_ns() // 1000

    def _tat(self, key: str, now: int) -> int:
        return max(self.tat.get(key, 0), now)

    async def admit(self, request: Request, lease_us: int) -> Ticket:
        for pot in request.pots:
            await self._load(pot)
        # Nothing below awaits: in one event loop, the checks and the changes are atomic.
        now = self._now()
        sets: list[tuple[str, int]] = []
        conc: list[str] = []
        req: tuple[int, int, int] | None = None
        tok: tuple[int, int, int] | None = None
        for subject in request.subjects:
            rpm_key, tpm_key, conc_key = subject.keys
            limits = subject.limits
            if limits.rpm:
                step = math.ceil(WINDOW_US / limits.rpm)
                tat = self._tat(rpm_key, now)
                burst = (limits.rpm - 1) * step
                if tat - now > burst:
                    raise _refusal(["rate", "requests", subject.name, limits.rpm, tat - now - burst], request)
                new = tat + step
                sets.append((rpm_key, new))
                remaining = (limits.rpm * step - (new - now)) // step
                if req is None or remaining < req[1]:
                    req = (limits.rpm, remaining, new - now)
            if limits.tpm:
                step = math.ceil(WINDOW_US / limits.tpm)
                used = self._tat(tpm_key, now) - now
                if used >= limits.tpm * step:
                    raise _refusal(
                        ["rate", "tokens", subject.name, limits.tpm, used - limits.tpm * step + step], request
                    )
                remaining = (limits.tpm * step - used) // step
                if tok is None or remaining < tok[1]:
                    tok = (limits.tpm, remaining, used)
            if limits.concurrency:
                members = self.inflight.setdefault(conc_key, {})
                for rid in [rid for rid, expiry in members.items() if expiry <= now]:
                    del members[rid]
                if len(members) >= limits.concurrency:
                    raise _refusal(["concurrency", subject.name, limits.concurrency], request)
                conc.append(conc_key)
        chosen, fewest, chosen_set, chosen_busy = -1, 0, None, ""
        soonest: list[Any] | None = None
        for index, (deployment_id, rpm_key, tpm_key, rpm, tpm) in enumerate(request.deployments):
            wait: list[Any] | None = None
            pending = None
            if rpm:
                step = math.ceil(WINDOW_US / rpm)
                tat = self._tat(rpm_key, now)
                if tat - now > (rpm - 1) * step:
                    wait = ["rate", "requests", "deployment", rpm, tat - now - (rpm - 1) * step]
                else:
                    pending = (rpm_key, tat + step)
            if wait is None and tpm:
                step = math.ceil(WINDOW_US / tpm)
                used = self._tat(tpm_key, now) - now
                if used >= tpm * step:
                    wait = ["rate", "tokens", "deployment", tpm, used - tpm * step + step]
            if wait is not None:
                if soonest is None or wait[4] < soonest[4]:
                    soonest = wait
                continue
            load, key = 0, ""
            if request.busy:
                key = busy_key(deployment_id)
                members = self.inflight.setdefault(key, {})
                for rid in [rid for rid, expiry in members.items() if expiry <= now]:
                    del members[rid]
                load = len(members)
            if chosen < 0 or load < fewest:
                chosen, fewest, chosen_set, chosen_busy = index, load, pending, key
            if not request.busy:
                break
        if request.deployments and chosen < 0:
            assert soonest is not None
            raise _refusal(soonest, request)
        if chosen_set:
            sets.append(chosen_set)
        if chosen_busy:
            conc.append(chosen_busy)
        headroom = request.max_cost  # None: no bound yet (a pot's may be negative: overdrawn)
        tight = -1
        for index, pot in enumerate(request.pots):
            state = self.pots[pot.key]
            for rid in [rid for rid, (_, expiry) in state.reserved.items() if expiry <= now]:
                del state.reserved[rid]
            cap = state.credit if pot.kind == "c" else pot.limit_nanos
            available = cap - state.spent - sum(amount for amount, _ in state.reserved.values())
            if headroom is None or available < headroom:
                headroom, tight = available, index
        reserve, capped = 0, -1
        if headroom is not None:  # a pot or a max cost applies
            worst = request.prompt_cost + request.want_tokens * request.per_token
            if headroom >= worst:
                reserve = worst
            elif request.per_token > 0 and headroom >= request.prompt_cost + request.per_token:
                capped = (headroom - request.prompt_cost) // request.per_token
                reserve = request.prompt_cost + capped * request.per_token
            else:
                raise _refusal(["pay", tight, headroom, request.prompt_cost], request)
        for key, value in sets:
            self.tat[key] = value
        for key in conc:
            self.inflight[key][request.request_id] = now + lease_us
        if reserve:
            for pot in request.pots:
                self.pots[pot.key].reserved[request.request_id] = (reserve, now + lease_us)
        r = req or (-1, -1, -1)
        t = tok or (-1, -1, -1)
        return _ticket(self, request, ["ok", chosen, reserve, capped, *r, *t])

    async def deployment_wait(self, rpm_key: str, tpm_key: str, rpm: int, tpm: int) -> int:
        now = self._now()
        if tpm:
            step = math.ceil(WINDOW_US / tpm)
            used = self._tat(tpm_key, now) - now
            if used >= tpm * step:
                return used - tpm * step + step
        if rpm:
            step = math.ceil(WINDOW_US / rpm)
            tat = self._tat(rpm_key, now)
            if tat - now > (rpm - 1) * step:
                return tat - now - (rpm - 1) * step
            self.tat[rpm_key] = tat + step
        return 0

    async def busy_move(self, request_id: str, old: str, new: str, lease_us: int) -> None:
        self.inflight.get(old, {}).pop(request_id, None)
        self.inflight.setdefault(new, {})[request_id] = self._now() + lease_us

    async def _load(self, pot: Pot) -> None:
        state = self.pots.get(pot.key)
        fresh = state is not None and (
            pot.kind != "c" or time.monotonic() - state.loaded_at < self.CREDIT_REFRESH_SECONDS
        )
        if fresh:
            return
        spent, credit = await run_db(lambda: pot_store.derive(pot.meta))
        state = self.pots.get(pot.key)
        if state is None:
            self.pots[pot.key] = _LocalPot(spent=spent, credit=credit, loaded_at=time.monotonic())
        else:
            # Credits: top-ups may come from another process (a command); spend is this process's.
            state.credit, state.loaded_at = credit, time.monotonic()

    async def settle(
        self, ticket: Ticket, *, tokens: int, cost: int, deployment: int | None, event: bytes | None
    ) -> bool:
        now = self._now()
        for key in ticket.concurrency:
            self.inflight.get(key, {}).pop(ticket.request_id, None)
        tpm = list(ticket.tpm)
        if deployment is not None and deployment in ticket.deployment_tpm:
            tpm.append(ticket.deployment_tpm[deployment])
        if tokens > 0:
            for key, limit in tpm:
                self.tat[key] = self._tat(key, now) + tokens * math.ceil(WINDOW_US / limit)
        for pot in ticket.pots:
            state = self.pots.get(pot.key)
            if state is not None:
                state.reserved.pop(ticket.request_id, None)
                state.spent += cost
        return False


# -- the facade the proxy calls ------------------------------------------------------------------------


class Governor:
    """Chooses the backend (Redis, or in-process), and handles Redis going away and coming back."""

    PROBE_MIN_SECONDS = 0.5
    PROBE_MAX_SECONDS = 5.0

    def __init__(self) -> None:
        self.local = LocalBackend()
        self._redis: RedisBackend | None = None
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._pause = self.PROBE_MIN_SECONDS

    def _remote(self) -> RedisBackend:
        if self._redis is None:
            self._redis = RedisBackend()
        return self._redis

    async def admit(self, request: Request) -> Ticket:
        lease_us = int(hot.TOLLHOUSE_LEASE_SECONDS * 1_000_000)
        if not hot.REDIS_URL:
            return await self.local.admit(request, lease_us)
        now = time.monotonic()
        if self._down_since is None or now >= self._next_probe:
            if self._down_since is not None:
                self._next_probe = now + self._pause  # this call probes; the others keep skipping
            try:
                ticket = await self._remote().admit(request, lease_us)
            except (redis.RedisError, OSError) as exc:
                self._failed(exc)
            else:
                if self._down_since is not None:
                    self._recovered()
                return ticket
        if hot.TOLLHOUSE_REDIS_FAILURE == "open":
            return await self.local.admit(request, lease_us)
        raise errors.ServiceUnavailable(
            "Rate limits and budgets cannot be checked right now (their store is unreachable); "
            "please retry shortly."
        )

    async def settle(
        self, ticket: Ticket, *, tokens: int, cost: int, deployment: int | None, event: bytes | None
    ) -> bool:
        """Give back what admission took and count what the call used. True if `event` was appended
        to the usage stream in the same step."""
        if ticket.settled:
            return False
        ticket.settled = True
        if isinstance(ticket.backend, LocalBackend):
            return await ticket.backend.settle(
                ticket, tokens=tokens, cost=cost, deployment=deployment, event=None
            )
        try:
            return await ticket.backend.settle(
                ticket, tokens=tokens, cost=cost, deployment=deployment, event=event
            )
        except (redis.RedisError, OSError) as exc:
            self._settle_failed(ticket, exc)
            return False

    def settle_sent(
        self, ticket: Ticket, *, tokens: int, cost: int, deployment: int | None, event: bytes | None
    ) -> Coroutine[Any, Any, bool] | None:
        """`settle`, its command queued now and written before a task that yields once resumes;
        what is returned awaits the reply (True if `event` was appended). So the answer can leave
        before the reply is back while Redis still has the settlement before the client has the
        answer: the client's next call is admitted against it, as if settlement had been awaited.
        None where the command cannot be queued at once (in-process limits, redis-py, no connection
        open yet): then `settle`."""
        if ticket.settled or not isinstance(ticket.backend, RedisBackend):
            return None
        try:
            reply = ticket.backend.settle_sent(
                ticket, tokens=tokens, cost=cost, deployment=deployment, event=event
            )
        except (redis.RedisError, OSError):
            return None  # `settle` tries again and handles it
        if reply is None:
            return None
        ticket.settled = True
        return self._settled(ticket, reply, event is not None)

    async def _settled(self, ticket: Ticket, reply: Coroutine[Any, Any, Any], emitted: bool) -> bool:
        try:
            await reply
        except (redis.RedisError, OSError) as exc:
            self._settle_failed(ticket, exc)
            return False
        return emitted

    def _settle_failed(self, ticket: Ticket, exc: Exception) -> None:
        # The reservation and the in-flight mark expire with their lease; the spend is repaired
        # from the ledger by the reconciliation task.
        logger.warning(
            "could not settle request %s in Redis (%s); its reservation will expire and "
            "reconciliation will count its cost",
            ticket.request_id,
            type(exc).__name__,
        )
        self._failed(exc)

    async def deployment_wait(self, ticket: Ticket, deployment: Any) -> int:
        """0 if `deployment` (a catalog.DeploymentInfo admission did not pick: a fallback) is within
        its own rpm / tpm caps (its request is then counted, and its tokens will be at settlement),
        else the µs until it has room. Unreachable Redis: 0, the deployment is tried (its upstream
        enforces its quota)."""
        rpm_key, tpm_key = deployment_counters(deployment.id)
        rpm, tpm = deployment.rpm_limit or 0, deployment.tpm_limit or 0
        try:
            wait = int(await ticket.backend.deployment_wait(rpm_key, tpm_key, rpm, tpm))
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)
            return 0
        if not wait and tpm:
            ticket.deployment_tpm[deployment.id] = (tpm_key, tpm)
        return wait

    async def busy_move(self, ticket: Ticket, deployment_id: int) -> None:
        """A least_busy call moves on to another deployment: count it in flight there instead."""
        if ticket.busy is None or ticket.busy[0] == deployment_id or ticket.settled:
            return
        old, new = ticket.busy[1], busy_key(deployment_id)
        ticket.busy = (deployment_id, new)
        ticket.concurrency = [new if key == old else key for key in ticket.concurrency]
        try:
            await ticket.backend.busy_move(
                ticket.request_id, old, new, int(hot.TOLLHOUSE_LEASE_SECONDS * 1_000_000)
            )
        except (redis.RedisError, OSError) as exc:
            self._failed(exc)  # the old mark expires with its lease

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            self._pause = self.PROBE_MIN_SECONDS
            mode = (
                "governing each process on its own (fail-open)"
                if hot.TOLLHOUSE_REDIS_FAILURE == "open"
                else "refusing calls with 503 (fail-closed)"
            )
            logger.warning(
                "rate-limit and budget store unreachable (%s: %s); %s until it answers again",
                type(exc).__name__,
                str(exc)[:200],
                mode,
            )
        else:
            self._pause = min(self._pause * 2, self.PROBE_MAX_SECONDS)
        self._next_probe = now + self._pause

    def _recovered(self) -> None:
        assert self._down_since is not None
        # What this process counted on its own is stale from now on (calls spend through Redis
        # again): the next outage starts from the ledger, not from these numbers. Calls admitted
        # during the outage still settle against the backend that admitted them.
        self.local = LocalBackend()
        logger.warning(
            "rate-limit and budget store reachable again after %.1f s; limits are shared again",
            time.monotonic() - self._down_since,
        )
        self._down_since = None
        self._pause = self.PROBE_MIN_SECONDS


# -- building the request for a call ---------------------------------------------------------------


def rate_subjects(key: KeyInfo, end_user: str) -> list[Subject]:
    subjects = []

    def counters(*parts: str) -> tuple[str, str, str]:
        return (redis_key("rl", *parts, "r"), redis_key("rl", *parts, "t"), redis_key("rl", *parts, "c"))

    if key.id is not None and key.key_limits.any():
        subjects.append(Subject("API key", counters("k", str(key.id)), key.key_limits))
    if key.tenant_limits.any():
        subjects.append(Subject("organization", counters("o", str(key.tenant_id)), key.tenant_limits))
    if end_user and key.end_user_limits.any():
        subjects.append(Subject("end user", counters("u", str(key.tenant_id), end_user), key.end_user_limits))
    return subjects


def deployment_counters(deployment_id: int) -> tuple[str, str]:
    return redis_key("rl", "d", str(deployment_id), "r"), redis_key("rl", "d", str(deployment_id), "t")


def busy_key(deployment_id: int) -> str:
    """The calls in flight on a deployment (least_busy routes): a sorted set of leases, by expiry."""
    return redis_key("rl", "d", str(deployment_id), "b")


_PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly"}


def budget_pots(key: KeyInfo, end_user: str, at: datetime) -> list[Pot]:
    """The hard budgets (and prepaid credits) that apply to a call of `key` for `end_user` at `at`."""
    pots = []
    for budget in key.budgets:
        if not budget.hard:
            continue
        subject = ""
        if budget.scope == "end_user":
            if not end_user or (budget.end_user and budget.end_user != end_user):
                continue
            subject = end_user
        if budget.scope == "key" and key.id is None:
            continue
        span = window(budget.period, key.tenant_tz, at)
        whose = {
            "tenant": "this organization",
            "key": "this API key",
            "end_user": "this end user",
        }.get(budget.scope, "this organization")
        pots.append(
            Pot(
                key=pot_store.budget_pot(key.tenant_id, budget.id, span.label, subject),
                kind="b",
                limit_nanos=budget.amount_nanos,
                code="budget_exceeded",
                description=f"the {_PERIOD_WORDS.get(budget.period, budget.period)} budget of {whose}",
                meta={
                    "tenant": key.tenant_id,
                    "scope": budget.scope,
                    "key": key.id if budget.scope == "key" else None,
                    "end_user": subject,
                    "start": span.start.timestamp(),
                    "end": span.end.timestamp(),
                    "budget": budget.id,
                    "label": span.label,
                },
                ttl_seconds=int(span.seconds_left(at)) + pot_store.KEEP_AFTER_PERIOD_SECONDS,
            )
        )
    if key.prepaid:
        pots.append(
            Pot(
                key=pot_store.credit_pot(key.tenant_id),
                kind="c",
                limit_nanos=0,
                code="credits_exhausted",
                description="the prepaid credit balance",
                meta={"tenant": key.tenant_id, "scope": "credits"},
                ttl_seconds=0,
            )
        )
    return pots
