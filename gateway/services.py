"""Writes to the upstream configuration: providers, routes, deployments; and the demo.

Every write validates the row (`full_clean()`) first, so no path (admin, commands, the demo) can
store a provider URL, alias list or timeout the gateway cannot use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction

from accounts import services as account_services
from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import Membership, Plan, Tenant
from billing.budgets import budget_set
from billing.models import Budget
from billing.services import model_price_set
from gateway.models import Deployment, ModelRoute, Provider
from gateway.selectors import credential_mask

# A small catalog with list prices, USD per million tokens (input, cached input, output), installed
# by `demo_models_install` for the tests' fixtures and `provider_add`; the demo itself loads the full
# default catalog (gateway/catalog.toml, gateway/catalogsync.py).
DEMO_MODELS: dict[str, tuple[str, str, str]] = {
    "gpt-4.1": ("2.00", "0.50", "8.00"),
    "claude-sonnet-4.5": ("3.00", "0.30", "15.00"),
    "gemini-2.5-flash": ("0.30", "0.03", "2.50"),
    "deepseek-v3.2": ("0.28", "0.028", "0.42"),
    "text-embedding-3-small": ("0.02", "0.02", "0"),
}
DEMO_ALIASES = {"gpt-4.1": ["gpt4"]}
# Cache-write list prices (5-minute, 1-hour writes) where they differ from input: Anthropic's.
DEMO_CACHE_WRITE_PRICES: dict[str, tuple[str, str]] = {"claude-sonnet-4.5": ("3.75", "6.00")}
PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)


PROVIDER_AUDIT_FIELDS = (
    "name",
    "kind",
    "base_url",
    "credential_env",
    "connect_timeout",
    "first_byte_timeout",
    "read_timeout",
    "total_timeout",
    "enabled",
)
ROUTE_AUDIT_FIELDS = (
    "name",
    "aliases",
    "strategy",
    "max_output_tokens",
    "context_window",
    "fallbacks",
    "enabled",
)
DEPLOYMENT_AUDIT_FIELDS = (
    "route",
    "provider",
    "upstream_model",
    "priority",
    "weight",
    "rpm_limit",
    "tpm_limit",
    "enabled",
)


def _provider_snapshot(provider: Provider | None) -> dict[str, Any] | None:
    """What the audit log keeps of a provider: its fields, and the credential as a mask, never its value."""
    snapshot = audit_snapshot(provider, PROVIDER_AUDIT_FIELDS)
    if snapshot is not None and provider is not None:
        snapshot["credential"] = credential_mask(provider)
    return snapshot


def _audit(
    *,
    actor: Actor | None,
    action: str,
    target: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    if before != after:
        audit_record(tenant=None, actor=actor, action=action, target=target, before=before, after=after)


@transaction.atomic
def provider_save(
    *, provider: Provider, credential: str | None = None, actor: Actor | None = None
) -> Provider:
    """Save a provider as it is on the instance; `credential` (if given) replaces the stored one,
    and an empty string clears it. Audited (the credential as a mask only)."""
    stored = Provider.objects.select_for_update().filter(pk=provider.pk).first() if provider.pk else None
    before = _provider_snapshot(stored)
    if credential is not None:
        provider.set_credential(credential)
    provider.full_clean()
    provider.save()
    after = _provider_snapshot(provider)
    _audit(actor=actor, action="provider.create" if stored is None else "provider.update", target=provider,
           before=before, after=after)  # fmt: skip
    return provider


@transaction.atomic
def provider_upsert(
    *,
    name: str,
    kind: str,
    base_url: str,
    credential: str | None = None,
    read_timeout: Decimal | None = None,
    credential_env: str | None = None,
    actor: Actor | None = None,
) -> Provider:
    provider = Provider.objects.select_for_update().filter(name=name).first() or Provider(name=name)
    provider.kind, provider.base_url = kind, base_url
    if read_timeout is not None:
        provider.read_timeout = read_timeout
    if credential_env is not None:
        provider.credential_env = credential_env
    return provider_save(provider=provider, credential=credential, actor=actor)


def _route_rules(route: ModelRoute) -> None:
    """The catalog's rules across routes: one model name means one route (no name or alias of this
    route is another route's name or alias), and fallbacks name existing routes without a loop."""
    aliases = route.aliases if isinstance(route.aliases, list) else []
    fallbacks = route.fallbacks if isinstance(route.fallbacks, list) else []
    errors: dict[str, list[str]] = {}
    others = ModelRoute.objects.exclude(pk=route.pk) if route.pk else ModelRoute.objects.all()
    owner: dict[str, str] = {}  # every other route's name and aliases -> that route's name
    following: dict[str, list[str]] = {}  # route name -> the names its fallbacks resolve to
    for name, their_aliases, their_fallbacks in others.values_list("name", "aliases", "fallbacks"):
        owner[name] = name
        for alias in their_aliases or []:
            owner.setdefault(alias, name)
        following[name] = list(their_fallbacks or [])
    if route.name in owner:
        errors.setdefault("name", []).append(
            f"{route.name!r} is already a name or alias of route {owner[route.name]!r}."
        )
    seen: set[str] = set()
    for alias in aliases:
        if alias == route.name or alias in seen:
            errors.setdefault("aliases", []).append(
                f"{alias!r} is listed twice (or is the route's own name)."
            )
        elif alias in owner:
            errors.setdefault("aliases", []).append(
                f"{alias!r} is already a name or alias of route {owner[alias]!r}: one model name, one route."
            )
        seen.add(alias)
    mine = {route.name, *aliases}
    for name in fallbacks:
        if name in mine:
            errors.setdefault("fallbacks", []).append(
                f"{name!r} is this route: a route cannot fall back to itself."
            )
        elif name not in owner:
            errors.setdefault("fallbacks", []).append(f"{name!r} is not a route (or an alias of one).")
    if "fallbacks" not in errors and fallbacks:
        following[route.name] = fallbacks
        for alias in aliases:
            owner[alias] = route.name
        owner[route.name] = route.name
        loop = _fallback_loop(route.name, following, owner)
        if loop:
            errors["fallbacks"] = [f"These fallbacks make a loop: {' → '.join(loop)}."]
    if errors:
        raise ValidationError(errors)


def _fallback_loop(start: str, following: dict[str, list[str]], owner: dict[str, str]) -> list[str]:
    """The first loop through `start` in the fallback graph (route names), or []."""
    path = [start]

    def walk(name: str, visiting: set[str]) -> list[str]:
        for target in following.get(name, []):
            route_name = owner.get(target, target)
            if route_name == start:
                return [*path, start]
            if route_name in visiting:
                continue
            visiting.add(route_name)
            path.append(route_name)
            found = walk(route_name, visiting)
            if found:
                return found
            path.pop()
        return []

    return walk(start, {start})


@transaction.atomic
def route_save(*, route: ModelRoute, actor: Actor | None = None) -> ModelRoute:
    """Save a route as it is on the instance: the row's own validation, then the rules across routes
    (`_route_rules`). Audited."""
    stored = ModelRoute.objects.select_for_update().filter(pk=route.pk).first() if route.pk else None
    route.full_clean()
    _route_rules(route)
    route.save()
    _audit(actor=actor, action="route.create" if stored is None else "route.update", target=route,
           before=audit_snapshot(stored, ROUTE_AUDIT_FIELDS), after=audit_snapshot(route, ROUTE_AUDIT_FIELDS))  # fmt: skip
    return route


@transaction.atomic
def route_upsert(*, name: str, aliases: list[str] | None = None, actor: Actor | None = None) -> ModelRoute:
    route = ModelRoute.objects.select_for_update().filter(name=name).first()
    if route is None:
        return route_save(route=ModelRoute(name=name, aliases=aliases or []), actor=actor)
    if aliases is not None and route.aliases != aliases:
        route.aliases = aliases
        route_save(route=route, actor=actor)
    return route


@transaction.atomic
def deployment_save(*, deployment: Deployment, actor: Actor | None = None) -> Deployment:
    stored = (
        Deployment.objects.select_for_update().filter(pk=deployment.pk).first() if deployment.pk else None
    )
    deployment.full_clean()
    deployment.save()
    _audit(actor=actor, action="deployment.create" if stored is None else "deployment.update", target=deployment,
           before=audit_snapshot(stored, DEPLOYMENT_AUDIT_FIELDS),
           after=audit_snapshot(deployment, DEPLOYMENT_AUDIT_FIELDS))  # fmt: skip
    return deployment


@transaction.atomic
def deployment_delete(*, deployment: Deployment, actor: Actor | None = None) -> None:
    before = audit_snapshot(deployment, DEPLOYMENT_AUDIT_FIELDS)
    audit_record(
        tenant=None, actor=actor, action="deployment.delete", target=deployment, before=before, after=None
    )
    deployment.delete()


@transaction.atomic
def deployment_upsert(
    *,
    route: ModelRoute,
    provider: Provider,
    upstream_model: str,
    priority: int = 0,
    enabled: bool = True,
    actor: Actor | None = None,
) -> Deployment:
    deployment = Deployment.objects.select_for_update().filter(route=route, provider=provider).first()
    deployment = deployment or Deployment(route=route, provider=provider)
    deployment.upstream_model, deployment.priority, deployment.enabled = upstream_model, priority, enabled
    return deployment_save(deployment=deployment, actor=actor)


def _price(model: str, prices: tuple[str, str, str], *, list_model: str = "") -> None:
    writes = DEMO_CACHE_WRITE_PRICES.get(list_model or model)
    model_price_set(
        model=model,
        input_per_mtok=Decimal(prices[0]),
        cached_input_per_mtok=Decimal(prices[1]),
        output_per_mtok=Decimal(prices[2]),
        effective_from=PRICES_FROM,
        cache_write_per_mtok=Decimal(writes[0]) if writes else None,
        cache_write_1h_per_mtok=Decimal(writes[1]) if writes else None,
    )


@transaction.atomic
def demo_models_install(*, provider: Provider, priority: int = 0) -> None:
    """The demo's routes (and aliases), served by `provider`, with their list prices."""
    for model, prices in DEMO_MODELS.items():
        route = route_upsert(name=model, aliases=DEMO_ALIASES.get(model, []))
        # Created when missing, otherwise left as the operator set it (e.g. disabled in favour of
        # a real provider): running the demo again must not bring fake answers back.
        if not Deployment.objects.filter(route=route, provider=provider).exists():
            deployment_save(
                deployment=Deployment(route=route, provider=provider, upstream_model=model, priority=priority)
            )
        _price(model, prices)


DEMO_OWNER_EMAIL = "owner@demo.localhost"
# The demo tenant's budget: small, so that a few calls move its chart and cross its 50 % alert; soft,
# so that the demo keeps answering past it.
DEMO_BUDGET = Decimal("0.01")


@dataclass(frozen=True)
class Demo:
    tenant: Tenant
    raw_key: str
    admin_username: str
    admin_password: str | None  # only when the admin user was created just now
    real_providers: list[str]
    owner_email: str = DEMO_OWNER_EMAIL  # signs in to the console as the demo tenant's owner
    owner_password: str | None = None  # only when the owner was created just now


@transaction.atomic
def demo_prepare(*, mock_url: str) -> Demo:
    """Create whatever of the demo is missing, and always issue a fresh demo key."""
    plan, _ = Plan.objects.get_or_create(name="Demo")
    tenant = Tenant.objects.filter(slug="demo").first() or account_services.tenant_create(
        name="Demo", slug="demo", plan=plan
    )
    # The default catalog's routes and list prices, every route served by the mock provider, and the
    # real providers whose keys are in the environment (gateway/catalogsync.py, which imports this
    # module: hence imported here).
    from gateway.catalogsync import demo_catalog_install

    actor = Actor.command("demo")
    registered = demo_catalog_install(mock_url=mock_url, actor=actor)

    User = get_user_model()
    password = None
    admin = User.objects.filter(username="admin").first()
    if admin is None:
        password = secrets.token_urlsafe(12)
        admin = User.objects.create_superuser(username="admin", email="admin@localhost", password=password)
    Membership.objects.get_or_create(tenant=tenant, user=admin, defaults={"role": Membership.Role.OWNER})

    # The console's demo user: the tenant's owner, not an operator.
    owner_password = None
    owner = User.objects.filter(username=DEMO_OWNER_EMAIL).first()
    if owner is None:
        owner_password = secrets.token_urlsafe(12)
        owner = User.objects.create_user(
            username=DEMO_OWNER_EMAIL, email=DEMO_OWNER_EMAIL, password=owner_password
        )
    if not Membership.objects.filter(tenant=tenant, user=owner).exists():
        account_services.membership_save(
            membership=Membership(tenant=tenant, user=owner, role=Membership.Role.OWNER), actor=actor
        )
    if not Budget.objects.filter(tenant=tenant, scope=Budget.Scope.TENANT).exists():
        budget_set(
            tenant=tenant,
            usd=DEMO_BUDGET,
            period=Budget.Period.MONTH,
            hard=False,
            thresholds=[50, 80, 100],
            emails=[DEMO_OWNER_EMAIL],
            actor=actor,
        )

    issued = account_services.api_key_issue(tenant=tenant, name="demo", created_by=admin, actor=actor)
    return Demo(
        tenant=tenant,
        raw_key=issued.raw,
        admin_username="admin",
        admin_password=password,
        real_providers=registered,
        owner_email=DEMO_OWNER_EMAIL,
        owner_password=owner_password,
    )
