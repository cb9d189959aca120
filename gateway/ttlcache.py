"""A small in-process TTL cache for the hot path, with single-flight loading.

Entries live `ttl` seconds; when one expires, the first caller loads it again and concurrent
callers await that same load instead of each going to the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


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
        if entry is not None and entry[1] > time.monotonic():
            return entry[0]
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._load(key))
            self._pending[key] = pending
        # shield: one caller going away must not cancel the load the others wait for
        return await asyncio.shield(pending)

    async def _load(self, key: K) -> V:
        try:
            value = await self.loader(key)
            if len(self._entries) >= self.max_entries:
                self._evict()
            self._entries[key] = (value, time.monotonic() + self.ttl)
            return value
        finally:
            self._pending.pop(key, None)

    def _evict(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
