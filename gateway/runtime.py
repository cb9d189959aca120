"""Process-wide machinery of the gateway, created once per worker by the ASGI lifespan.

Handlers read it; only `startup`/`shutdown` change it. If a server runs without lifespan events,
everything is created on first use instead.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Coroutine
from typing import Any

from django.conf import settings

from billing.usage import UsageSink, make_sink
from config.redis import close_async_client
from gateway.auth import Authenticator
from gateway.breaker import CircuitBreaker
from gateway.cache import ResponseCache
from gateway.catalog import CatalogCache
from gateway.governor import Governor
from gateway.invalidation import Subscriber
from gateway.routing import Router
from gateway.upstream import UpstreamClient

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self) -> None:
        self.authenticator = Authenticator()
        self.catalog = CatalogCache()
        self.governor = Governor()
        self.breaker = CircuitBreaker()
        self.router = Router()
        self.cache = ResponseCache()
        self._sink: UsageSink | None = None
        self._sink_ready = False
        self._http = UpstreamClient()
        self._background: set[asyncio.Task[Any]] = set()
        self._mock: Any = None
        self._subscriber = Subscriber(self.apply_config_change)

    # -- shared clients ------------------------------------------------------------------------------
    def http(self) -> UpstreamClient:
        """One pooled client per process: keep-alive to every upstream (gateway/upstream.py)."""
        return self._http

    async def sink(self) -> UsageSink:
        if self._sink is None:
            self._sink = make_sink()
            await self._sink.start()
            self._sink_ready = True
        return self._sink

    def started_sink(self) -> UsageSink | None:
        """The usage sink if it has started (it starts on the first call that needs it)."""
        return self._sink if self._sink_ready else None

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run work that must finish even if the request that started it is cancelled."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def apply_config_change(self, message: dict[str, str]) -> None:
        if message.get("kind") == "key" and message.get("prefix"):
            self.authenticator.cache.invalidate(message["prefix"])
        else:
            self.clear_caches()

    def clear_caches(self) -> None:
        self.authenticator.cache.clear()
        self.authenticator.end_users.clear()
        self.catalog.clear()

    # -- lifecycle -----------------------------------------------------------------------------------
    async def startup(self) -> None:
        from config.checks import raise_on_config_errors

        raise_on_config_errors()
        settle_heap()
        if settings.TOLLHOUSE_SINGLE_PROCESS:
            logger.warning(
                "Embedded mode: counters and the usage buffer live in this process, so run exactly one "
                "gateway process (set DATABASE_URL and REDIS_URL to scale out)."
            )
        await self.sink()
        await self._subscriber.start()
        if settings.TOLLHOUSE_EMBEDDED_MOCK:
            from gateway.mockserver import start_server

            try:
                self._mock = await start_server(port=settings.TOLLHOUSE_MOCK_PORT)
            except OSError as exc:
                raise RuntimeError(
                    f"the embedded mock provider cannot listen on port {settings.TOLLHOUSE_MOCK_PORT} "
                    f"({exc.strerror or exc}): set TOLLHOUSE_MOCK_PORT to a free port."
                ) from exc
            logger.info("embedded mock provider listening on %s", self._mock.url)

    async def shutdown(self) -> None:
        from gateway import metrics

        await self._subscriber.stop()
        if self._background:
            await asyncio.wait(set(self._background), timeout=10)
        from gateway import bodylog

        await bodylog.writer.stop()  # the bodies still queued are written
        if self._sink is not None:
            await self._sink.stop()
            self._sink, self._sink_ready = None, False
        await self._http.close()
        metrics.flush()  # the calls of the last quarter second
        if self._mock is not None:
            await self._mock.close()
            self._mock = None
        if settings.REDIS_URL:
            await close_async_client()


# Calls make short-lived objects by the thousand (futures, timers, dicts); the collector's youngest
# generation filling up every 700 allocations starts a collection several times per call, and each
# full one walked every object Django, the URLconf and the libraries made at start. The bench profile
# showed that time charged to whatever frame allocated (`loop_client`, `current_task`, ...).
GC_YOUNG_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once a worker has loaded everything: what exists now lives as long as the process, so the
    collector stops walking it (`gc.freeze`), and it collects young objects less often."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


runtime = Runtime()
