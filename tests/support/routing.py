"""Routes with several deployments on the mock provider, told apart by their upstream model names
(the mock answers with the model it was asked for), and calls fired at gateways in bulk."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Spec:
    model: str  # the upstream model: unique per test, so answers say who served them
    weight: int = 1
    priority: int = 0
    rpm: int | None = None


def strategy_route(
    *, strategy: str, provider: Any, specs: Sequence[Spec], name: str = ""
) -> tuple[Any, list[Any]]:
    from gateway.models import Deployment, ModelRoute
    from gateway.services import deployment_save, route_save

    route = route_save(route=ModelRoute(name=name or f"routed-{uuid.uuid4().hex[:8]}", strategy=strategy))
    deployments = [
        deployment_save(
            deployment=Deployment(
                route=route,
                provider=provider,
                upstream_model=spec.model,
                weight=spec.weight,
                priority=spec.priority,
                rpm_limit=spec.rpm,
            )
        )
        for spec in specs
    ]
    return route, deployments


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def body(model: str, content: str = "Hi") -> bytes:
    return orjson.dumps({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4})


async def fire(
    urls: Sequence[str], key: str, bodies: Sequence[bytes], *, concurrency: int = 16, timeout: float = 30
) -> list[httpx.Response]:
    """Send every body (call i to gateway i mod len(urls)), at most `concurrency` at once; the
    responses in the order of the bodies."""
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def one(i: int, content: bytes) -> httpx.Response:
            async with gate:
                return await client.post(
                    urls[i % len(urls)] + "/v1/chat/completions",
                    content=content,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )

        return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))


def served(responses: Sequence[httpx.Response]) -> list[str]:
    """The upstream model that answered each call (all must have succeeded)."""
    out = []
    for response in responses:
        assert response.status_code == 200, response.text
        out.append(response.json()["model"])
    return out


def split(responses: Sequence[httpx.Response]) -> Counter[str]:
    return Counter(served(responses))
