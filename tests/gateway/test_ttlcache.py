import asyncio

import pytest

from gateway.ttlcache import TTLCache


class Source:
    def __init__(self):
        self.calls = 0
        self.value = "v1"
        self.fail = False
        self.gate: asyncio.Event | None = None

    async def load(self, key):
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("database down")
        return f"{key}:{self.value}"


def test_it_loads_once_for_concurrent_callers():
    async def scenario():
        source = Source()
        source.gate = asyncio.Event()
        cache = TTLCache(ttl=60, loader=source.load)
        waiting = [asyncio.ensure_future(cache.get("k")) for _ in range(20)]
        await asyncio.sleep(0)
        source.gate.set()
        return await asyncio.gather(*waiting), source.calls

    values, calls = asyncio.run(scenario())
    assert values == ["k:v1"] * 20 and calls == 1


def test_it_serves_the_stale_value_while_one_refresh_runs():
    async def scenario():
        source = Source()
        cache = TTLCache(ttl=0.01, loader=source.load)
        assert await cache.get("k") == "k:v1"
        await asyncio.sleep(0.02)
        source.value = "v2"
        stale = [await cache.get("k") for _ in range(5)]  # no waiting: the old value, one refresh
        await asyncio.sleep(0.01)
        return stale, await cache.get("k"), source.calls

    stale, fresh, calls = asyncio.run(scenario())
    assert stale == ["k:v1"] * 5 and fresh == "k:v2" and calls == 2


def test_it_keeps_the_stale_value_when_a_refresh_fails():
    async def scenario():
        source = Source()
        cache = TTLCache(ttl=0.01, loader=source.load)
        await cache.get("k")
        await asyncio.sleep(0.02)
        source.fail = True
        first = await cache.get("k")
        await asyncio.sleep(0.01)
        return first, await cache.get("k")

    assert asyncio.run(scenario()) == ("k:v1", "k:v1")


def test_it_loads_afresh_after_an_invalidation():
    async def scenario():
        source = Source()
        cache = TTLCache(ttl=60, loader=source.load)
        await cache.get("k")
        source.value = "v2"
        cached = await cache.get("k")
        cache.invalidate("k")
        return cached, await cache.get("k")

    assert asyncio.run(scenario()) == ("k:v1", "k:v2")


def test_it_raises_a_failed_first_load_to_the_caller():
    source = Source()
    source.fail = True
    with pytest.raises(RuntimeError):
        asyncio.run(TTLCache(ttl=60, loader=source.load).get("k"))
