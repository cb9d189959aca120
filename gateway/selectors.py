"""Reads of the upstream configuration for the operator's pages and API: providers with their
credential's state (never its value), routes with their deployments and the prices in force."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Prefetch, QuerySet
from django.http import Http404

from billing.selectors import PriceView, prices_for_models
from config.crypto import CredentialError
from gateway.models import Deployment, ModelRoute, Provider

MASK = "••••"
# A shorter credential is shown as the mask alone: its last four characters would be most of it.
MASK_SHOWS_TAIL_FROM = 12


@dataclass(frozen=True)
class CredentialState:
    """Where a provider's credential comes from, for people: `kind` is "env", "stored" or "none"."""

    kind: str
    label: str  # "stored ••••a1b2", "from env OPENAI_API_KEY (set in this process)", "none"
    env_set: bool = False


def _tail(value: str) -> str:
    return MASK + value[-4:] if len(value) >= MASK_SHOWS_TAIL_FROM else MASK


def credential_state(provider: Provider) -> CredentialState:
    if provider.credential_env:
        is_set = bool(os.environ.get(provider.credential_env))
        where = "set" if is_set else "unset"
        return CredentialState("env", f"from env {provider.credential_env} ({where} in this process)", is_set)
    if provider.credential_encrypted:
        try:
            plaintext = provider.get_credential()
        except CredentialError:
            return CredentialState("stored", f"stored {MASK} (cannot be decrypted with this encryption key)")
        return CredentialState("stored", f"stored {_tail(plaintext)}")
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
