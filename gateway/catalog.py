"""Step 5 of the request path: the routing table, prices included, as one in-process snapshot.

The snapshot is rebuilt from the database at most once per TOLLHOUSE_CACHE_TTL seconds per
process; building it is the only database read routing ever does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from billing.pricing import PriceNanos
from billing.selectors import price_in_force, price_schedule
from config.crypto import CredentialError
from config.hot import hot
from gateway.db import run_db
from gateway.models import Deployment, ModelRoute
from gateway.ttlcache import TTLCache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderInfo:
    id: int
    name: str
    kind: str
    base_url: str
    credential: str = field(repr=False)  # decrypted, in memory only; never logged
    connect_timeout: float
    read_timeout: float  # stream idle
    first_byte_timeout: float = 120.0
    total_timeout: float = 600.0


@dataclass(frozen=True)
class DeploymentInfo:
    id: int
    provider: ProviderInfo
    upstream_model: str
    priority: int
    weight: int
    rpm_limit: int | None = None  # the upstream's own quota for this deployment
    tpm_limit: int | None = None


@dataclass(frozen=True)
class RouteInfo:
    name: str
    deployments: tuple[DeploymentInfo, ...]
    max_output_tokens: int = 4096
    fallbacks: tuple[str, ...] = ()  # route names, tried in order when this route's deployments fail
    aliases: tuple[str, ...] = ()  # other names of this route (what /v1/models lists)
    context_window: int | None = None  # tokens in and out per call, where the catalog knows it
    created: int = 0  # when the route was added (epoch seconds), for /v1/models
    strategy: str = "priority"  # ModelRoute.Strategy: how gateway/routing.py orders the deployments


@dataclass(frozen=True)
class Catalog:
    routes: dict[str, RouteInfo]  # by public name and by alias
    public_names: tuple[str, ...]
    prices: dict[str, list[tuple[datetime, PriceNanos]]]

    def route(self, model: str) -> RouteInfo | None:
        return self.routes.get(model)

    def price(self, upstream_model: str, at: datetime) -> PriceNanos | None:
        schedule = self.prices.get(upstream_model)
        return price_in_force(schedule, at) if schedule else None


def _build_catalog() -> Catalog:
    deployments: dict[int, list[DeploymentInfo]] = {}
    query = Deployment.objects.filter(enabled=True, provider__enabled=True, route__enabled=True)
    for deployment in query.select_related("provider"):
        provider = deployment.provider
        try:
            credential = provider.get_credential()
        except CredentialError:
            logger.error(
                "provider %s: credential cannot be decrypted; its deployments are skipped", provider.name
            )
            continue
        deployments.setdefault(deployment.route_id, []).append(
            DeploymentInfo(
                id=deployment.id,
                provider=ProviderInfo(
                    id=provider.id,
                    name=provider.name,
                    kind=provider.kind,
                    base_url=provider.base_url.rstrip("/"),
                    credential=credential,
                    connect_timeout=float(provider.connect_timeout),
                    read_timeout=float(provider.read_timeout),
                    first_byte_timeout=float(provider.first_byte_timeout),
                    total_timeout=float(provider.total_timeout),
                ),
                upstream_model=deployment.upstream_model,
                priority=deployment.priority,
                weight=deployment.weight,
                rpm_limit=deployment.rpm_limit,
                tpm_limit=deployment.tpm_limit,
            )
        )
    routes: dict[str, RouteInfo] = {}
    names = []
    for route in ModelRoute.objects.filter(enabled=True).order_by("name"):
        info = RouteInfo(
            name=route.name,
            deployments=tuple(deployments.get(route.id, ())),
            max_output_tokens=route.max_output_tokens,
            fallbacks=tuple(name for name in route.fallbacks if name != route.name),
            aliases=tuple(route.aliases),
            context_window=route.context_window,
            created=int(route.created_at.timestamp()),
            strategy=route.strategy,
        )
        names.append(route.name)
        for alias in route.aliases:
            routes.setdefault(alias, info)
        routes[route.name] = info  # a real name wins over another route's alias
    return Catalog(routes=routes, public_names=tuple(names), prices=price_schedule())


async def _load(_: str) -> Catalog:
    return await run_db(_build_catalog)


class CatalogCache:
    def __init__(self) -> None:
        self.cache: TTLCache[str, Catalog] = TTLCache(ttl=hot.TOLLHOUSE_CACHE_TTL, loader=_load)

    async def get(self) -> Catalog:
        return await self.cache.get("catalog")

    def clear(self) -> None:
        self.cache.clear()
