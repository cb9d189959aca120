"""Failed authentication, counted per client IP: the gateway's front door against strangers.

A call refused before any key is identified leaves no usage row (strangers must not be able to
flood the ledger). Instead each failure is counted here, per client IP and per minute, and logged
once per IP per minute. Past TOLLHOUSE_AUTH_FAILURES_PER_MINUTE failures, every call from the
address that the process cannot identify from what it already holds in memory (a missing,
malformed, unknown or wrong key, a token of an unknown issuer or a bad signature) is refused with
429, before the gateway looks anything up in the database, so random keys cannot turn into database
load. A key the process holds (gateway/auth.py's cache) keeps working from that address: a
misconfigured script behind an office NAT must not lock out everyone else behind it.

The count is per process, on purpose: it is checked on every call that misses the key cache, and
a Redis round trip there would cost every cold key what only strangers should pay. With N
workers an address gets at most N times the allowance, which still bounds the database reads.
Memory is bounded too: at most MAX_TRACKED addresses, the stalest dropped first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from config.hot import hot
from gateway import errors

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
MAX_TRACKED = 50_000


@dataclass
class _Window:
    started: float
    failures: int = 0


class FailedAuthCounter:
    def __init__(self, *, limit: int | None = None, clock: object = time.monotonic) -> None:
        self.limit = hot.TOLLHOUSE_AUTH_FAILURES_PER_MINUTE if limit is None else limit
        self._clock = clock
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self.total = 0  # every failure this process has seen

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator, no-any-return]

    def _window(self, ip: str, now: float) -> _Window | None:
        window = self._windows.get(ip)
        if window is not None and now - window.started >= WINDOW_SECONDS:
            if window.failures > 1:
                logger.warning("%d failed authentications from %s in the minute before", window.failures, ip)
            del self._windows[ip]
            return None
        return window

    def retry_after(self, ip: str | None) -> int | None:
        """Seconds until `ip` may try again, or None when it is not blocked."""
        if not self.limit:
            return None
        now = self._now()
        window = self._window(ip or "-", now)
        if window is None or window.failures < self.limit:
            return None
        return max(1, int(window.started + WINDOW_SECONDS - now + 0.999))

    def refuse_if_blocked(self, ip: str | None) -> None:
        """429 for an address past its failures, before anything is looked up for it."""
        retry_after = self.retry_after(ip)
        if retry_after is not None:
            raise errors.RateLimited(
                "Too many failed authentication attempts from your IP address; "
                f"retry in {retry_after} seconds.",
                code="too_many_failed_authentications",
                headers={"Retry-After": str(retry_after)},
            )

    def refuse(self, ip: str | None, reason: str) -> None:
        """A call from `ip` could not be identified: 429 if the address is past its failures, else
        the failure is counted (and the caller answers 401)."""
        self.refuse_if_blocked(ip)
        self.failed(ip, reason)

    def failed(self, ip: str | None, reason: str) -> None:
        key = ip or "-"
        now = self._now()
        self.total += 1
        window = self._window(key, now)
        if window is None:
            window = _Window(started=now)
            self._windows[key] = window
            logger.warning(
                "failed authentication from %s (%s); further failures from it are counted, not logged, "
                "for a minute",
                key,
                reason,
            )
        window.failures += 1
        self._windows.move_to_end(key)
        while len(self._windows) > MAX_TRACKED:
            self._windows.popitem(last=False)
