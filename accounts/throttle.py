"""Password guessing on the console's and the admin's sign-in: at most TOLLHOUSE_LOGIN_RATE failed
attempts per client IP (config.clientip, the same address the gateway uses) and, separately, per
account (the username tried, whatever the address) per window.

Counted in Redis when it is configured, so the limit holds across every worker; if Redis cannot
be reached the count falls back to this process for as long as that lasts (logged once each way),
so a Redis outage neither opens the door entirely nor turns the login page into a 500.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from config import clientip
from config.redis import redis_key, sync_client

logger = logging.getLogger(__name__)

_MAX_LOCAL = 10_000


class LoginThrottle:
    def __init__(self, *, limit: int, window_seconds: int) -> None:
        self.limit = limit
        self.window = window_seconds
        self._local: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._redis_down = False

    def _slot(self) -> int:
        return int(time.time()) // self.window

    def _redis_failed(self, exc: Exception) -> None:
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "login limiter: Redis unreachable (%s); counting in this process", type(exc).__name__
            )

    def _redis_ok(self) -> None:
        if self._redis_down:
            self._redis_down = False
            logger.warning("login limiter: Redis reachable again")

    def _key(self, ip: str, slot: int) -> str:
        return redis_key("login", ip, str(slot))

    def failures(self, ip: str) -> int:
        """Failures in the sliding window ending now: this slot's count plus the previous slot's,
        weighted by how much of it the window still covers (rounded up). A fixed window alone would
        let a guesser spend the limit at the end of one slot and again at the start of the next."""
        slot = self._slot()
        elapsed = (time.time() % self.window) / self.window
        if settings.REDIS_URL:
            try:
                current, previous = sync_client().mget(self._key(ip, slot), self._key(ip, slot - 1))
                self._redis_ok()
                return int(current or 0) + math.ceil(int(previous or 0) * (1 - elapsed))  # type: ignore[arg-type]
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)
        return self._local.get((ip, slot), 0) + math.ceil(self._local.get((ip, slot - 1), 0) * (1 - elapsed))

    def failed(self, ip: str) -> int:
        """Count one more for `ip` in this window; the count so far (this one included)."""
        slot = self._slot()
        if settings.REDIS_URL:
            try:
                pipe = sync_client().pipeline(transaction=False)
                pipe.incr(self._key(ip, slot))
                pipe.expire(self._key(ip, slot), self.window * 2)
                count = pipe.execute()[0]
                self._redis_ok()
                return int(count)
            except (redis.RedisError, OSError) as exc:
                self._redis_failed(exc)
        count = self._local.get((ip, slot), 0) + 1
        self._local[(ip, slot)] = count
        self._local.move_to_end((ip, slot))
        while len(self._local) > _MAX_LOCAL:
            self._local.popitem(last=False)
        return count

    def retry_after(self) -> int:
        return self.window - int(time.time()) % self.window

    def reset(self) -> None:
        self._local.clear()


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_rate(rate: str) -> tuple[int, int]:
    """'10/m' -> (10, 60). Validated at start by settings; this is the one parser."""
    count, _, unit = rate.partition("/")
    return int(count), _UNITS[unit]


@lru_cache(maxsize=1)
def login_throttle() -> LoginThrottle:
    """The process's one throttle (its fallback counts live as long as the process)."""
    limit, window = parse_rate(settings.TOLLHOUSE_LOGIN_RATE)
    return LoginThrottle(limit=limit, window_seconds=window)


def login_counters(request: HttpRequest) -> list[str]:
    """What a sign-in attempt counts against: its client IP, and the account it names (hashed, so
    a username never appears in Redis; case-folded, as usernames are typed either way)."""
    ip = clientip.from_meta(request.META) or "-"
    counters = [ip]
    username = request.POST.get("username", "")
    if isinstance(username, str) and username.strip():
        folded = username.strip().casefold()[:300].encode("utf-8", "replace")
        counters.append("account:" + hashlib.sha256(folded).hexdigest()[:32])
    return counters


def login_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap a login view: refuse a POST from an address over the limit with 429; count a POST that
    did not sign in (a successful login answers with a redirect)."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        return _counted(view, request, login_counters(request), *args, **kwargs)

    return wrapped


def _counted(
    view: Callable[..., HttpResponse], request: HttpRequest, counters: list[str], *args: Any, **kwargs: Any
) -> HttpResponse:
    """Refuse with 429 when a counter is over the limit; else run the view, and count each counter
    once if it did not sign in (a sign-in answers with a redirect)."""
    throttle = login_throttle()
    if any(throttle.failures(counter) >= throttle.limit for counter in counters):
        response = HttpResponse(
            "Too many failed sign-in attempts from your address or for this account. Try again later.",
            status=429,
            content_type="text/plain; charset=utf-8",
        )
        response["Retry-After"] = str(throttle.retry_after())
        return response
    response = view(request, *args, **kwargs)
    if response.status_code != 302:
        for counter in counters:
            throttle.failed(counter)
    return response


def sso_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap the single sign-on callback: it counts against the same per-address limit as a password
    sign-in (TOLLHOUSE_LOGIN_RATE). A callback that does not sign in (a refused token, a replayed
    or forged state) is a failed attempt; over the limit, 429 before the provider is asked anything."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _counted(view, request, [clientip.from_meta(request.META) or "-"], *args, **kwargs)

    return wrapped


class InvitationThrottle(LoginThrottle):
    """Failed opens of invitation links per client IP (own counters, apart from sign-in's)."""

    def _key(self, ip: str, slot: int) -> str:
        return redis_key("invitation", ip, str(slot))


@lru_cache(maxsize=1)
def invitation_throttle() -> InvitationThrottle:
    limit, window = parse_rate(settings.TOLLHOUSE_INVITATION_RATE)
    return InvitationThrottle(limit=limit, window_seconds=window)


def invitation_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap the invitation page: an address over TOLLHOUSE_INVITATION_RATE failed attempts gets 429;
    an attempt fails when its link opens nothing usable (4xx) or a form it posts is refused."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttle = invitation_throttle()
        ip = clientip.from_meta(request.META) or "-"
        if throttle.failures(ip) >= throttle.limit:
            response = HttpResponse(
                "Too many failed attempts from your address. Try again later.",
                status=429,
                content_type="text/plain; charset=utf-8",
            )
            response["Retry-After"] = str(throttle.retry_after())
            return response
        response = view(request, *args, **kwargs)
        if response.status_code >= 400:
            throttle.failed(ip)
        return response

    return wrapped


# --- the management API (/api/v1/, accounts/api/authentication.py) -----------------------------------


class ApiAuthFailureThrottle(LoginThrottle):
    """Failed token checks on the management API per client IP (TOLLHOUSE_API_AUTH_FAILURE_RATE)."""

    def _key(self, ip: str, slot: int) -> str:
        return redis_key("api-auth", ip, str(slot))


class ApiTokenThrottle(LoginThrottle):
    """Calls per personal access token (TOLLHOUSE_API_RATE), counted by the token's public prefix."""

    def _key(self, prefix: str, slot: int) -> str:
        return redis_key("api-token", prefix, str(slot))


@lru_cache(maxsize=8)
def _api_throttle(kind: type[LoginThrottle], rate: str) -> LoginThrottle:
    limit, window = parse_rate(rate)
    return kind(limit=limit, window_seconds=window)


def api_auth_failure_throttle() -> LoginThrottle:
    return _api_throttle(ApiAuthFailureThrottle, settings.TOLLHOUSE_API_AUTH_FAILURE_RATE)


def api_token_throttle() -> LoginThrottle:
    return _api_throttle(ApiTokenThrottle, settings.TOLLHOUSE_API_RATE)
