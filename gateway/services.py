"""Writes to the upstream configuration: providers, routes, deployments; and the demo.

Every write validates the row (`full_clean()`) first, so no path (admin, commands, the demo) can
store a provider URL, alias list or timeout the gateway cannot use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from accounts import services as account_services
from accounts.models import Membership, Plan, Tenant
from billing.services import model_price_set
from gateway.models import Deployment, ModelRoute, Provider

# Public list prices, USD per million tokens: input, cached input, output.
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
# The demo's mock serves these models in their provider's own wire format, so `make run` exercises
# translation (an OpenAI-chat client reaching an Anthropic or a Gemini upstream): model → (provider
# name, kind, path under the mock's URL).
DEMO_NATIVE_FORMATS: dict[str, tuple[str, str, str]] = {
    "claude-sonnet-4.5": ("mock-anthropic", "anthropic", "/v1"),
    "gemini-2.5-flash": ("mock-gemini", "gemini", "/v1beta"),
}
PRICES_FROM = datetime(2025, 1, 1, tzinfo=UTC)

# Real providers that `demo` registers when their key is in the environment: they take over the
# route from the mock (the mock deployment is disabled, never a silent fallback to fake answers).
REAL_PROVIDERS = {
    "openai": (
        "openai",
        "https://api.openai.com/v1",
        {"gpt-4.1": "gpt-4.1", "text-embedding-3-small": "text-embedding-3-small"},
    ),
    "deepseek": ("openai-compatible", "https://api.deepseek.com/v1", {"deepseek-v3.2": "deepseek-chat"}),
    "anthropic": ("anthropic", "https://api.anthropic.com/v1", {"claude-sonnet-4.5": "claude-sonnet-4-5"}),
    "gemini": (
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta",
        {"gemini-2.5-flash": "gemini-2.5-flash"},
    ),
}


@transaction.atomic
def provider_save(*, provider: Provider, credential: str | None = None) -> Provider:
    """Save a provider as it is on the instance; `credential` (if given) replaces the stored one,
    and an empty string clears it."""
    if credential is not None:
        provider.set_credential(credential)
    provider.full_clean()
    provider.save()
    return provider


@transaction.atomic
def provider_upsert(
    *, name: str, kind: str, base_url: str, credential: str | None = None, read_timeout: Decimal | None = None
) -> Provider:
    provider = Provider.objects.select_for_update().filter(name=name).first() or Provider(name=name)
    provider.kind, provider.base_url = kind, base_url
    if read_timeout is not None:
        provider.read_timeout = read_timeout
    return provider_save(provider=provider, credential=credential)


@transaction.atomic
def route_save(*, route: ModelRoute) -> ModelRoute:
    route.full_clean()
    route.save()
    return route


@transaction.atomic
def route_upsert(*, name: str, aliases: list[str] | None = None) -> ModelRoute:
    route = ModelRoute.objects.select_for_update().filter(name=name).first()
    if route is None:
        return route_save(route=ModelRoute(name=name, aliases=aliases or []))
    if aliases is not None and route.aliases != aliases:
        route.aliases = aliases
        route_save(route=route)
    return route


@transaction.atomic
def deployment_save(*, deployment: Deployment) -> Deployment:
    deployment.full_clean()
    deployment.save()
    return deployment


@transaction.atomic
def deployment_upsert(
    *, route: ModelRoute, provider: Provider, upstream_model: str, priority: int = 0, enabled: bool = True
) -> Deployment:
    deployment = Deployment.objects.select_for_update().filter(route=route, provider=provider).first()
    deployment = deployment or Deployment(route=route, provider=provider)
    deployment.upstream_model, deployment.priority, deployment.enabled = upstream_model, priority, enabled
    return deployment_save(deployment=deployment)


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


@dataclass(frozen=True)
class Demo:
    tenant: Tenant
    raw_key: str
    admin_username: str
    admin_password: str | None  # only when the admin user was created just now
    real_providers: list[str]


@transaction.atomic
def demo_prepare(*, mock_url: str) -> Demo:
    """Create whatever of the demo is missing, and always issue a fresh demo key."""
    plan, _ = Plan.objects.get_or_create(name="Demo")
    tenant = Tenant.objects.filter(slug="demo").first() or account_services.tenant_create(
        name="Demo", slug="demo", plan=plan
    )
    mock = provider_upsert(name="mock", kind="mock", base_url=mock_url.rstrip("/") + "/v1")
    demo_models_install(provider=mock, priority=10)
    mocks = [mock]
    for model, (name, kind, path) in DEMO_NATIVE_FORMATS.items():
        native = provider_upsert(name=name, kind=kind, base_url=mock_url.rstrip("/") + path)
        mocks.append(native)
        route = ModelRoute.objects.get(name=model)
        if not Deployment.objects.filter(route=route, provider=native).exists():
            # First run: the model is served in its own format; later runs leave it as the operator set it.
            deployment_save(
                deployment=Deployment(route=route, provider=native, upstream_model=model, priority=10)
            )
            Deployment.objects.filter(route=route, provider=mock).update(enabled=False)

    registered = []
    for env_name, credential in settings.PROVIDER_KEYS.items():
        if not credential:
            continue
        kind, base_url, models = REAL_PROVIDERS[env_name]
        provider = provider_upsert(name=env_name, kind=kind, base_url=base_url, credential=credential)
        for public, upstream in models.items():
            route = ModelRoute.objects.get(name=public)
            deployment_upsert(route=route, provider=provider, upstream_model=upstream, priority=0)
            Deployment.objects.filter(route=route, provider__in=mocks).update(enabled=False)
            if upstream != public:
                _price(upstream, DEMO_MODELS[public], list_model=public)
        registered.append(env_name)

    User = get_user_model()
    password = None
    admin = User.objects.filter(username="admin").first()
    if admin is None:
        password = secrets.token_urlsafe(12)
        admin = User.objects.create_superuser(username="admin", email="admin@localhost", password=password)
    Membership.objects.get_or_create(tenant=tenant, user=admin, defaults={"role": Membership.Role.OWNER})

    issued = account_services.api_key_issue(tenant=tenant, name="demo", created_by=admin)
    return Demo(
        tenant=tenant,
        raw_key=issued.raw,
        admin_username="admin",
        admin_password=password,
        real_providers=registered,
    )
