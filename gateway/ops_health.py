"""What the operator overview (/ops/, billing.views_ops_overview) reads from the gateway: the
circuit breakers holding deployments back now, and what each deployment is called. Billing imports
this lazily, in the view: apps depend gateway → billing → accounts, never the other way at import."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import redis

from gateway.breaker import BreakerView, breaker_states
from gateway.models import Deployment


@dataclass(frozen=True)
class DeploymentLabel:
    id: int
    route: str
    provider: str
    upstream_model: str
    enabled: bool
    strategy: str = ""  # the route's ModelRoute.Strategy, which decides its deployments' split

    def __str__(self) -> str:
        return f"{self.route} → {self.provider}/{self.upstream_model}"


def deployment_labels(ids: Iterable[int]) -> dict[int, DeploymentLabel]:
    """The named deployments that still exist (one query), by id."""
    wanted = {deployment for deployment in ids if deployment}
    if not wanted:
        return {}
    rows = Deployment.objects.filter(pk__in=wanted).values_list(
        "pk", "route__name", "provider__name", "upstream_model", "enabled", "route__strategy"
    )
    return {
        pk: DeploymentLabel(pk, route, provider, model, enabled, strategy)
        for pk, route, provider, model, enabled, strategy in rows
    }


@dataclass(frozen=True)
class Cooldown:
    breaker: BreakerView
    label: DeploymentLabel | None  # None: the deployment was deleted since


@dataclass
class BreakerHealth:
    shared: bool = True  # read from Redis (every gateway process's breakers)
    cooldowns: list[Cooldown] = field(default_factory=list)
    failing: list[int] = field(default_factory=list)  # a run of failures going, not open (yet)
    states: dict[int, str] = field(default_factory=dict)  # deployment id -> "open", "half_open", "failing"
    error: str = ""  # Redis could not be read


def breaker_health() -> BreakerHealth:
    """The deployments in cooldown now (open or half-open breakers), with their names."""
    try:
        states = breaker_states()
    except (redis.RedisError, OSError) as exc:
        return BreakerHealth(error=f"Redis could not be read ({type(exc).__name__}): breaker states unknown.")
    labels = deployment_labels([view.deployment_id for view in states.breakers])
    health = BreakerHealth(
        shared=states.shared,
        cooldowns=[Cooldown(view, labels.get(view.deployment_id)) for view in states.breakers],
        failing=sorted(states.failing),
    )
    health.states = {deployment: "failing" for deployment in states.failing}
    health.states.update({view.deployment_id: view.state for view in states.breakers})
    return health
