"""A small in-process TTL cache for the hot path: single-flight loads, stale-while-revalidate.

- A missing entry is loaded once; concurrent callers await that same load.
- An expired entry is still served while one background load refreshes it, so no request waits
  for the database just because a TTL ran out (the refresh is what keeps p99 flat). If that load
  fails, the stale value is kept and retried a second later: a database blip does not turn into
  401s for every caller.
- `invalidate` / `clear` drop entries outright (a config change was broadcast): the next caller
  loads afresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")
RETRY_AFTER_FAILED_REFRESH = 1.0


class TTLCache(Generic[K, V]):
    def __init__(
        self, *, ttl: float, loader: Callable[[K], Awaitable[V]], max_entries: int = 100_000
    ) -> None:
        self.ttl = ttl
        self.loader = loader
        self.max_entries = max_entries
        self._entries: dict[K, tuple[V, float]] = {}
        self._pending: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is not None:
            value, expires = entry
            if expires <= time.monotonic() and key not in self._pending:
                self._start_load(key).add_done_callback(self._refresh_done(key))
            return value
        pending = self._pending.get(key) or self._start_load(key)
        # shield: one caller going away must not cancel the load the others wait for
        return await asyncio.shield(pending)

    def _start_load(self, key: K) -> asyncio.Future[V]:
        future = asyncio.ensure_future(self._load(key))
        self._pending[key] = future
        return future

    async def _load(self, key: K) -> V:
        try:
            value = await self.loader(key)
            if len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[key] = (value, time.monotonic() + self.ttl)
            return value
        finally:
            self._pending.pop(key, None)

    def _refresh_done(self, key: K) -> Callable[[asyncio.Future[V]], None]:
        def done(future: asyncio.Future[V]) -> None:
            if future.cancelled() or future.exception() is None:
                return
            logger.error("cache refresh failed; serving the previous value", exc_info=future.exception())
            entry = self._entries.get(key)
            if entry is not None:
                self._entries[key] = (entry[0], time.monotonic() + RETRY_AFTER_FAILED_REFRESH)

        return done

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]

    def holds(self, key: K) -> bool:
        """Whether a value (fresh or stale) is cached for `key`: `get` would not wait for a load."""
        return key in self._entries

    def peek(self, key: K) -> V | None:
        """The cached value for `key` (fresh or stale), or None: never loads, never refreshes."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
