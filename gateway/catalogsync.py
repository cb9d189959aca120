"""The catalog as code: a catalog file (gateway/catalogfile.py) compared with the database, as a list
of changes (the diff `catalog_sync` prints), then applied in one transaction through the same
services the admin and the operator pages use (gateway/services.py, billing/services.py), which
validate each row and write its audit row.

What the file does not mention is left alone, unless `prune`:
- providers and routes not in the file are disabled, not deleted (keys, plans and usage rows name
  them, and a provider may hold a credential set in the admin); a provider a deployment in the file
  uses is kept;
- deployments of a route that the file does not list are deleted;
- a price is history: one already in force is never changed or deleted, with or without `prune`;
  only prices scheduled for a later date can be withdrawn. A price dated in the past is accepted only
  where it changes nothing already charged (the model had no price then, or the same one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor
from billing.models import ModelPrice
from billing.services import model_price_delete, model_price_schedule, model_price_set
from gateway.catalogfile import (
    CatalogFileError,
    CatalogSpec,
    DeploymentSpec,
    PriceSpec,
    ProviderSpec,
    RouteSpec,
    catalog_load,
    dotted,
)
from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import deployment_delete, deployment_save, provider_save, route_save

DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog.toml"

PROVIDER_FIELDS = ("kind", "base_url", "credential_env", *("connect_timeout", "read_timeout",
                   "first_byte_timeout", "total_timeout"), "enabled")  # fmt: skip
ROUTE_FIELDS = ("aliases", "strategy", "max_output_tokens", "context_window", "fallbacks", "enabled")
DEPLOYMENT_FIELDS = ("upstream_model", "priority", "weight", "rpm_limit", "tpm_limit", "enabled")
PRICE_FIELDS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")


@dataclass
class Change:
    sign: str  # "+" added, "~" changed, "-" removed or disabled
    label: str  # "route gpt-4.1", "deployment gpt-4.1 → openai", "price gpt-4.1 from 2025-04-14"
    fields: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, old, new)
    apply: Callable[[], None] = lambda: None
    order: int = 0  # providers, routes, deployments, prices, then what --prune disables

    def render(self) -> str:
        if self.sign == "+":
            shown = ", ".join(f"{name} {_shown(new)}" for name, _old, new in self.fields)
            return f"+ {self.label}" + (f": {shown}" if shown else "")
        if self.sign == "-":
            return f"- {self.label}"
        return f"~ {self.label}: " + "; ".join(
            f"{name}: {_shown(old)} → {_shown(new)}" for name, old, new in self.fields
        )


@dataclass
class Plan:
    changes: list[Change]
    warnings: list[str]

    def render(self) -> list[str]:
        return [change.render() for change in sorted(self.changes, key=lambda c: c.order)]

    def summary(self) -> str:
        counts = {sign: sum(1 for c in self.changes if c.sign == sign) for sign in "+~-"}
        return f"{counts['+']} added, {counts['~']} changed, {counts['-']} removed or disabled"


def _shown(value: Any) -> str:
    if isinstance(value, Decimal):
        return (
            format(value.normalize(), "f") if value == value.to_integral() else format(value, "f").rstrip("0")
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if value is None:
        return "none"
    return str(value)


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, Decimal) or isinstance(new, Decimal):
        return old is not None and new is not None and Decimal(old) == Decimal(new)
    if isinstance(old, list | tuple) and isinstance(new, list | tuple):
        return list(old) == list(new)
    return bool(old == new)


def _diff(current: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(name, current[name], value) for name, value in wanted.items() if not _same(current[name], value)]


# --- planning --------------------------------------------------------------------------------------


class _Planner:
    def __init__(self, spec: CatalogSpec, *, prune: bool, actor: Actor, path: str) -> None:
        self.spec, self.prune, self.actor, self.path = spec, prune, actor, path
        self.problems: list[tuple[int | None, str]] = []
        self.warnings: list[str] = []
        self.changes: list[Change] = []
        self.providers = {p.name: p for p in Provider.objects.all()}
        self.routes = {r.name: r for r in ModelRoute.objects.all()}
        self.now = timezone.now()

    def fail(self, line: int | None, reason: str) -> None:
        self.problems.append((line, reason))

    def plan(self) -> Plan:
        self.check_references()
        if self.problems:
            raise CatalogFileError(self.path, self.problems)
        for spec in self.spec.providers.values():
            self.plan_provider(spec)
        self.plan_routes()
        for route in self.spec.routes.values():
            self.plan_deployments(route)
        self.plan_prices()
        if self.prune:
            self.plan_prune()
        if self.problems:
            raise CatalogFileError(self.path, self.problems)
        return Plan(self.changes, self.warnings)

    def check_references(self) -> None:
        spec = self.spec
        kept = {name for name, route in self.routes.items() if name not in spec.routes}
        # Every name (and alias) of the routes that stay as they are: the file's must not clash.
        held: dict[str, str] = {}
        for name in kept:
            held[name] = name
            for alias in self.routes[name].aliases or []:
                held.setdefault(alias, name)
        known = set(held) | set(spec.routes) | {a for r in spec.routes.values() for a in r.aliases}
        for route in spec.routes.values():
            if route.name in held and held[route.name] != route.name:
                self.fail(spec.line("routes", route.name),
                          f"{dotted(('routes', route.name))}: already an alias of route {held[route.name]!r}, which the file does not list")  # fmt: skip
            for index, alias in enumerate(route.aliases):
                if alias in held:
                    self.fail(spec.line("routes", route.name, "aliases", index),
                              f"{dotted(('routes', route.name, 'aliases', index))}: duplicate alias {alias!r}: already a name or alias of "
                              f"route {held[alias]!r}, which the file does not list")  # fmt: skip
            for index, target in enumerate(route.fallbacks):
                if target == route.name or target in route.aliases:
                    self.fail(spec.line("routes", route.name, "fallbacks", index),
                              f"{dotted(('routes', route.name, 'fallbacks', index))}: {target!r} is this route itself")  # fmt: skip
                elif target not in known:
                    self.fail(spec.line("routes", route.name, "fallbacks", index),
                              f"{dotted(('routes', route.name, 'fallbacks', index))}: falls back to an unknown route {target!r}")  # fmt: skip
            for index, deployment in enumerate(route.deployments):
                if deployment.provider not in spec.providers and deployment.provider not in self.providers:
                    self.fail(spec.line("routes", route.name, "deployments", index, "provider"),
                              f"{dotted(('routes', route.name, 'deployments', index, 'provider'))}: unknown provider {deployment.provider!r} "
                              "(define it under [providers] or create it first)")  # fmt: skip
        for provider in spec.providers.values():
            if provider.credential_env and not os.environ.get(provider.credential_env):
                self.warnings.append(
                    f"provider {provider.name}: the environment variable {provider.credential_env} is not set "
                    "here; the gateway processes need it to call this provider"
                )

    def plan_provider(self, spec: ProviderSpec) -> None:
        wanted = {name: getattr(spec, name) for name in PROVIDER_FIELDS}
        current = self.providers.get(spec.name)
        if current is None:

            def create() -> None:
                provider_save(provider=Provider(name=spec.name, **wanted), actor=self.actor)

            self.changes.append(Change("+", f"provider {spec.name}", list(_added(wanted)), create, order=0))
            return
        fields = _diff({name: getattr(current, name) for name in PROVIDER_FIELDS}, wanted)
        if fields:

            def update(provider: Provider = current) -> None:
                provider = Provider.objects.get(pk=provider.pk)
                for name, value in wanted.items():
                    setattr(provider, name, value)
                provider_save(provider=provider, actor=self.actor)

            self.changes.append(Change("~", f"provider {spec.name}", fields, update, order=0))

    def plan_routes(self) -> None:
        # Saved in an order the route rules accept at each step: a route after the routes it falls
        # back to, and after the routes that give up an alias it takes.
        order: list[RouteSpec] = []
        pending = dict(self.spec.routes)
        while pending:
            ready = [r for r in pending.values() if not self._waits_for(r, pending)] or list(
                pending.values()
            )[:1]
            for route in ready:
                order.append(route)
                del pending[route.name]
        for position, spec in enumerate(order):
            self.plan_route(spec, position)

    def _waits_for(self, route: RouteSpec, pending: dict[str, RouteSpec]) -> bool:
        for other in pending.values():
            if other.name == route.name:
                continue
            falls_back = other.name in route.fallbacks or set(other.aliases) & set(route.fallbacks)
            if falls_back and other.name not in self.routes:
                return True
            stored = self.routes.get(other.name)
            if stored is not None and set(stored.aliases or []) & (set(route.aliases) | {route.name}):
                return True
        return False

    def plan_route(self, spec: RouteSpec, position: int) -> None:
        wanted: dict[str, Any] = {
            "aliases": list(spec.aliases),
            "strategy": spec.strategy,
            "max_output_tokens": spec.max_output_tokens,
            "context_window": spec.context_window,
            "fallbacks": list(spec.fallbacks),
            "enabled": spec.enabled,
        }
        current = self.routes.get(spec.name)
        order = 100 + position
        if current is None:

            def create() -> None:
                route_save(route=ModelRoute(name=spec.name, **wanted), actor=self.actor)

            self.changes.append(Change("+", f"route {spec.name}", list(_added(wanted)), create, order=order))
            return
        fields = _diff({name: getattr(current, name) for name in ROUTE_FIELDS}, wanted)
        if fields:

            def update(route: ModelRoute = current) -> None:
                route = ModelRoute.objects.get(pk=route.pk)
                for name, value in wanted.items():
                    setattr(route, name, value)
                route_save(route=route, actor=self.actor)

            self.changes.append(Change("~", f"route {spec.name}", fields, update, order=order))

    def plan_deployments(self, route: RouteSpec) -> None:
        stored = self.routes.get(route.name)
        existing: dict[str, Deployment] = {}
        if stored is not None:
            for deployment in (
                Deployment.objects.filter(route=stored).select_related("provider").order_by("id")
            ):
                existing.setdefault(deployment.provider.name, deployment)
        for spec in route.deployments:
            self.plan_deployment(route.name, spec, existing.get(spec.provider))
        if self.prune:
            listed = {spec.provider for spec in route.deployments}
            for name, deployment in existing.items():
                if name not in listed:

                    def delete(deployment: Deployment = deployment) -> None:
                        deployment_delete(
                            deployment=Deployment.objects.get(pk=deployment.pk), actor=self.actor
                        )

                    label = f"deployment {route.name} → {name} ({deployment.upstream_model}): not in the file"
                    self.changes.append(Change("-", label, [], delete, order=1000))

    def plan_deployment(self, route_name: str, spec: DeploymentSpec, current: Deployment | None) -> None:
        wanted: dict[str, Any] = {
            "upstream_model": spec.model,
            "priority": spec.priority,
            "weight": spec.weight,
            "rpm_limit": spec.rpm_limit,
            "tpm_limit": spec.tpm_limit,
            "enabled": spec.enabled,
        }
        label = f"deployment {route_name} → {spec.provider}"
        if current is None:

            def create() -> None:
                deployment = Deployment(
                    route=ModelRoute.objects.get(name=route_name),
                    provider=Provider.objects.get(name=spec.provider),
                    **wanted,
                )
                deployment_save(deployment=deployment, actor=self.actor)

            self.changes.append(Change("+", label, list(_added(wanted)), create, order=1001))
            return
        fields = _diff({name: getattr(current, name) for name in DEPLOYMENT_FIELDS}, wanted)
        if fields:

            def update(deployment: Deployment = current) -> None:
                deployment = Deployment.objects.get(pk=deployment.pk)
                for name, value in wanted.items():
                    setattr(deployment, name, value)
                deployment_save(deployment=deployment, actor=self.actor)

            self.changes.append(Change("~", label, fields, update, order=1001))

    def plan_prices(self) -> None:
        models = {price.model for price in self.spec.prices}
        stored: dict[str, list[ModelPrice]] = {}
        for price in ModelPrice.objects.filter(model__in=models).order_by("effective_from"):
            stored.setdefault(price.model, []).append(price)
        for index, spec in enumerate(sorted(self.spec.prices, key=lambda p: (p.model, p.effective_from))):
            self.plan_price(spec, stored.get(spec.model, []), 2000 + index)

    def price_line(self, spec: PriceSpec) -> int | None:
        entries = [p for p in self.spec.prices if p.model == spec.model]
        if len(entries) > 1 and ("prices", spec.model, 0) in self.spec.lines:
            return self.spec.line("prices", spec.model, entries.index(spec))
        return self.spec.line("prices", spec.model)

    def plan_price(self, spec: PriceSpec, history: list[ModelPrice], order: int) -> None:
        when = f"{spec.effective_from:%Y-%m-%d}" + ("" if spec.effective_from.time() == datetime.min.time()
                                                     else f" {spec.effective_from:%H:%M} UTC")  # fmt: skip
        label = f"price {spec.model} from {when}"
        wanted = _resolved_spec(spec)
        exact = next((p for p in history if p.effective_from == spec.effective_from), None)
        past = spec.effective_from <= self.now
        if exact is not None:
            fields = _diff(_resolved(exact), wanted)
            if not fields:
                return
            if past:
                self.fail(self.price_line(spec),
                          f"{dotted(('prices', spec.model))}: the price from {when} has been in force since then and cannot be "
                          "changed (prices are history): add a new entry with a later effective_from")  # fmt: skip
                return

            def update(price: ModelPrice = exact) -> None:
                model_price_schedule(model=spec.model, price=price, effective_from=spec.effective_from,
                                     **_price_arguments(spec), actor=self.actor)  # fmt: skip

            self.changes.append(Change("~", label, fields, update, order=order))
            return
        if past:
            before = [p for p in history if p.effective_from <= spec.effective_from]
            current = [p for p in history if p.effective_from <= self.now]
            for reference, what in ((before[-1:], "in force then"), (current[-1:], "in force now")):
                if reference and _diff(_resolved(reference[0]), wanted):
                    self.fail(self.price_line(spec),
                              f"{dotted(('prices', spec.model))}: a price from {when} would be retroactive: the price {what} "
                              f"(from {reference[0].effective_from:%Y-%m-%d}) differs, and prices already charged are "
                              "never changed; give the new price a future effective_from")  # fmt: skip
                    return
            if before:
                return  # the same price was already in force from an earlier date: nothing to add

        def create() -> None:
            model_price_set(model=spec.model, effective_from=spec.effective_from, **_price_arguments(spec),
                            actor=self.actor)  # fmt: skip

        self.changes.append(Change("+", label, list(_added(wanted)), create, order=order))

    def plan_prune(self) -> None:
        used = {d.provider for r in self.spec.routes.values() for d in r.deployments}
        for name, provider in sorted(self.providers.items()):
            if name not in self.spec.providers and name not in used and provider.enabled:
                self.changes.append(
                    Change(
                        "-",
                        f"provider {name}: not in the file, disabled",
                        [],
                        self._disable(provider),
                        order=3000,
                    )
                )
        for name, route in sorted(self.routes.items()):
            if name not in self.spec.routes and route.enabled:
                self.changes.append(
                    Change(
                        "-", f"route {name}: not in the file, disabled", [], self._disable(route), order=3001
                    )
                )
        listed = {(p.model, p.effective_from) for p in self.spec.prices}
        models = {p.model for p in self.spec.prices}
        for price in ModelPrice.objects.filter(effective_from__gt=self.now).order_by(
            "model", "effective_from"
        ):
            if price.model in models and (price.model, price.effective_from) not in listed:

                def withdraw(price: ModelPrice = price) -> None:
                    model_price_delete(price=price, actor=self.actor)

                label = (
                    f"price {price.model} from {price.effective_from:%Y-%m-%d}: scheduled, not in the file"
                )
                self.changes.append(Change("-", label, [], withdraw, order=3002))

    def _disable(self, obj: Provider | ModelRoute) -> Callable[[], None]:
        def disable() -> None:
            if isinstance(obj, Provider):
                provider = Provider.objects.get(pk=obj.pk)
                provider.enabled = False
                provider_save(provider=provider, actor=self.actor)
            else:
                route = ModelRoute.objects.get(pk=obj.pk)
                route.enabled = False
                route_save(route=route, actor=self.actor)

        return disable


def _added(wanted: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(name, None, value) for name, value in wanted.items() if value not in (None, "", [], ())]


def _resolved(price: ModelPrice) -> dict[str, Any]:
    """What each kind of token costs (an empty cache-write price means the input price, an empty
    1-hour one the cache-write price): two rows that charge the same are the same price."""
    write = price.cache_write_per_mtok if price.cache_write_per_mtok is not None else price.input_per_mtok
    return {
        "input": price.input_per_mtok,
        "cached_input": price.cached_input_per_mtok,
        "cache_write": write,
        "cache_write_1h": price.cache_write_1h_per_mtok
        if price.cache_write_1h_per_mtok is not None
        else write,
        "output": price.output_per_mtok,
    }


def _resolved_spec(spec: PriceSpec) -> dict[str, Any]:
    write = spec.cache_write if spec.cache_write is not None else spec.input
    return {
        "input": spec.input,
        "cached_input": spec.cached_input,
        "cache_write": write,
        "cache_write_1h": spec.cache_write_1h if spec.cache_write_1h is not None else write,
        "output": spec.output,
    }


def _price_arguments(spec: PriceSpec) -> dict[str, Any]:
    return {
        "input_per_mtok": spec.input,
        "cached_input_per_mtok": spec.cached_input,
        "output_per_mtok": spec.output,
        "cache_write_per_mtok": spec.cache_write,
        "cache_write_1h_per_mtok": spec.cache_write_1h,
    }


# --- the entry points ------------------------------------------------------------------------------


@dataclass
class SyncResult:
    plan: Plan
    applied: bool


def catalog_plan(*, spec: CatalogSpec, prune: bool = False, actor: Actor, path: str = "catalog") -> Plan:
    """What syncing `spec` would change, read from the database (nothing written)."""
    return _Planner(spec, prune=prune, actor=actor, path=path).plan()


@transaction.atomic
def catalog_sync(
    *, path: str | Path, prune: bool = False, dry_run: bool = False, actor: Actor, text: str | None = None
) -> SyncResult:
    """Read the catalog file at `path`, plan, and (unless `dry_run`) apply every change in this one
    transaction. CatalogFileError (with lines) for a file that cannot be synced: nothing changes."""
    spec = catalog_load(path, text=text)
    return catalog_apply(spec=spec, prune=prune, dry_run=dry_run, actor=actor, path=str(path))


@transaction.atomic
def catalog_apply(
    *, spec: CatalogSpec, prune: bool = False, dry_run: bool = False, actor: Actor, path: str = "catalog"
) -> SyncResult:
    plan = catalog_plan(spec=spec, prune=prune, actor=actor, path=path)
    if dry_run or not plan.changes:
        return SyncResult(plan, applied=False)
    for change in sorted(plan.changes, key=lambda c: c.order):
        try:
            change.apply()
        except ValidationError as exc:
            # A rule only the database can check (another route's name, a price in force...): the
            # whole transaction is rolled back, and the operator told which entry it was.
            raise CatalogFileError(path, [(None, f"{change.label}: {'; '.join(exc.messages)}")]) from None
    return SyncResult(plan, applied=True)


def list_prices(*, at: datetime | None = None) -> dict[str, PriceSpec]:
    """The default catalog's list price in force at `at` (default now) for each upstream model id."""
    moment = at or timezone.now()
    found: dict[str, PriceSpec] = {}
    for price in sorted(catalog_load(DEFAULT_CATALOG).prices, key=lambda p: p.effective_from):
        if price.effective_from <= moment:
            found[price.model] = price
    return found


# Which of the demo's mock providers stands in for each kind of upstream: (name, kind, path under
# the mock's URL). The mock speaks every wire format, so `make run` exercises translation.
DEMO_MOCKS = {
    "openai": ("mock", "mock", "/v1"),
    "openai-compatible": ("mock", "mock", "/v1"),
    "mock": ("mock", "mock", "/v1"),
    "anthropic": ("mock-anthropic", "anthropic", "/v1"),
    "gemini": ("mock-gemini", "gemini", "/v1beta"),
}
DEMO_PRIORITY = 10  # behind a real provider's deployment (priority 0) when one is registered


def demo_catalog_install(*, mock_url: str, actor: Actor) -> list[str]:
    """The default catalog's routes and list prices, every route served by the mock provider (in
    its upstream's wire format), so the demo's costs are real ones. A provider of the catalog whose
    key is in the environment (settings.PROVIDER_KEYS) is registered as the file says (its
    credential read from that environment variable) and takes its routes over: the mock deployment
    is disabled, never a silent fallback to fake answers. A mock deployment that exists is left as
    the operator set it. Returns the real providers registered."""
    spec = catalog_load(DEFAULT_CATALOG)
    base = mock_url.rstrip("/")
    real = {name for name, key in settings.PROVIDER_KEYS.items() if key and name in spec.providers}
    providers = {name: spec.providers[name] for name in sorted(real)}
    for name, kind, suffix in DEMO_MOCKS.values():
        providers[name] = ProviderSpec(name=name, kind=kind, base_url=base + suffix)
    stored = {
        (d.route.name, d.provider.name): d.enabled
        for d in Deployment.objects.select_related("route", "provider").filter(provider__name__in=providers)
    }
    routes: dict[str, RouteSpec] = {}
    for route in spec.routes.values():
        deployments: list[DeploymentSpec] = []
        taken_over = any(d.provider in real for d in route.deployments)
        for deployment in route.deployments:
            if deployment.provider in real:
                deployments.append(deployment)
            mock = DEMO_MOCKS[spec.providers[deployment.provider].kind][0]
            if any(d.provider == mock for d in deployments):
                continue
            enabled = not taken_over and stored.get((route.name, mock), True)
            deployments.append(
                DeploymentSpec(provider=mock, model=deployment.model, priority=DEMO_PRIORITY, enabled=enabled)
            )
        routes[route.name] = replace(route, deployments=tuple(deployments))
    demo = CatalogSpec(providers=providers, routes=routes, prices=spec.prices, lines=spec.lines)
    catalog_apply(spec=demo, actor=actor, path=str(DEFAULT_CATALOG))
    return sorted(real)
