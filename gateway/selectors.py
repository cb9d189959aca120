"""Reads of the upstream configuration for the operator's pages and API: providers with their
credential's state (never its value), routes with their deployments and the prices in force."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from billing.selectors import PriceView, prices_for_models
from config.crypto import CredentialError
from config.redis import sync_client
from gateway.breaker import open_key
from gateway.models import Deployment, ModelRoute, Provider

logger = logging.getLogger(__name__)

MASK = "••••"
# A shorter credential is shown as the mask alone: its last four characters would be most of it.
MASK_SHOWS_TAIL_FROM = 12


@dataclass(frozen=True)
class CredentialState:
    """Where a provider's credential comes from, for people: `kind` is "env", "stored" or "none"."""

    kind: str
    label: str  # "stored ••••a1b2", "from env OPENAI_API_KEY (set in this process)", "none"
    env_set: bool = False
    short: str = ""  # for a table cell: "••••a1b2", "OPENAI_API_KEY (set)"


def _tail(value: str) -> str:
    return MASK + value[-4:] if len(value) >= MASK_SHOWS_TAIL_FROM else MASK


def credential_state(provider: Provider) -> CredentialState:
    if provider.credential_env:
        is_set = bool(os.environ.get(provider.credential_env))
        where = "set" if is_set else "unset"
        label = f"from env {provider.credential_env} ({where} in this process)"
        return CredentialState("env", label, is_set, f"{provider.credential_env} ({where})")
    if provider.credential_encrypted:
        try:
            plaintext = provider.get_credential()
        except CredentialError:
            label = f"stored {MASK} (cannot be decrypted with this encryption key)"
            return CredentialState("stored", label, short=f"{MASK} (cannot be decrypted)")
        return CredentialState("stored", f"stored {_tail(plaintext)}", short=_tail(plaintext))
    return CredentialState("none", "none")


def credential_mask(provider: Provider) -> str:
    """The credential as the audit log and every page after the one that set it show it."""
    return credential_state(provider).label


def providers_for_ops() -> QuerySet[Provider]:
    return Provider.objects.annotate(deployment_count=Count("deployments")).order_by("name")


def provider_for_ops(provider_id: int) -> Provider:
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        raise Http404("No such provider.")
    return provider


def routes_for_ops() -> QuerySet[ModelRoute]:
    deployments = Deployment.objects.select_related("provider").order_by("priority", "id")
    return ModelRoute.objects.prefetch_related(Prefetch("deployments", queryset=deployments)).order_by("name")


def route_for_ops(route_id: int) -> ModelRoute:
    route = routes_for_ops().filter(pk=route_id).first()
    if route is None:
        raise Http404("No such route.")
    return route


def deployment_for_ops(route: ModelRoute, deployment_id: int) -> Deployment:
    deployment = Deployment.objects.select_related("provider").filter(route=route, pk=deployment_id).first()
    if deployment is None:
        raise Http404("No such deployment.")
    return deployment


def deployment_prices(routes: list[ModelRoute], *, at: datetime) -> dict[str, PriceView]:
    """The price in force (and the next one) of every upstream model the routes' deployments name,
    in one query."""
    models = {d.upstream_model for route in routes for d in route.deployments.all()}
    return prices_for_models(models, at=at)


@dataclass(frozen=True)
class BreakerState:
    state: str  # "open" (cooling down) or "half_open" (the cooldown is over; the next call probes)
    seconds_left: int


def breaker_states(deployment_ids: Iterable[int]) -> dict[int, BreakerState]:
    """The deployments among `deployment_ids` whose circuit breaker is not closed, as every gateway
    process sees it (gateway/breaker.py keeps it in Redis). Without Redis the breakers are each
    process's own, and this page's process has none to show."""
    ids = sorted(set(deployment_ids))
    if not ids or not settings.REDIS_URL:
        return {}
    try:
        with sync_client().pipeline(transaction=False) as pipe:
            pipe.hmget(open_key(), [str(i) for i in ids])
            pipe.time()
            until, (seconds, micros) = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("breaker states unavailable (Redis: %s)", type(exc).__name__)
        return {}
    now_us = int(seconds) * 1_000_000 + int(micros)
    states = {}
    for deployment_id, value in zip(ids, until, strict=True):
        if value is None:
            continue
        left = int(float(value) - now_us) // 1_000_000
        states[deployment_id] = BreakerState("open" if left > 0 else "half_open", max(left, 0))
    return states
