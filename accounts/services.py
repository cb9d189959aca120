"""Writes to accounts: plans, tenants, memberships and API keys.

Every write validates the whole row (`full_clean()`) before saving, whoever calls it: the admin,
the management commands, the console and the API all come through here, so none of them can store
a value the gateway cannot read. A bad value raises ValidationError and stores nothing.

A limit (requests or tokens per minute, calls in flight, a plan's monthly budget) is either empty,
meaning "none", or at least 1. A limit of 0 is refused rather than read as "blocked": the gateway
would refuse every call with a rate-limit error that no waiting ever clears, which is a confusing
way to say "suspended". Stopping calls has its own switches: a tenant's status, a key's revocation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import keys
from accounts.models import LIMIT_FIELDS, ApiKey, Membership, Plan, Tenant
from accounts.validators import ip_networks

# Used by the services and by the admin forms (next to the field), so both say the same thing.
limit_at_least_one = MinValueValidator(
    1,
    message="Enter 1 or more, or leave it empty for no limit: a limit of 0 would refuse every call "
    "(to stop calls, suspend the tenant or revoke the key).",
)


def amount_above_zero(value: Decimal) -> None:
    """A spending limit that is set is not $0 (a budget of 0 would refuse every call). Below 0 is
    the field's own validator's to refuse (`non_negative`, which full_clean runs)."""
    if value.is_finite() and value == 0:
        raise ValidationError(
            "Enter more than 0, or leave it empty for no budget: a budget of 0 would refuse every call "
            "(to stop calls, suspend the tenant or revoke the key).",
            code="not_above_zero",
        )


END_USER_LIMIT_FIELDS = ("end_user_rpm_limit", "end_user_tpm_limit", "end_user_concurrency_limit")


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def validate_allowed_ips(values: list[str]) -> list[str]:
    """The allow-list in the form it is stored (ValidationError naming any entry that is not an
    IP address or CIDR range)."""
    return ip_networks(values)


def _full_clean(
    obj: models.Model, limit_fields: tuple[str, ...], amount_fields: tuple[str, ...] = ()
) -> None:
    """`full_clean()`, plus: every limit that is set is at least 1, every spending limit more than 0
    (see the module's docstring). All the row's errors are raised together, each next to its field."""
    errors: dict[str, list[str]] = {}
    try:
        obj.full_clean()
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    checks: list[tuple[str, Callable[[Any], None]]] = [(name, limit_at_least_one) for name in limit_fields]
    checks += [(name, amount_above_zero) for name in amount_fields]
    for name, check in checks:
        value = getattr(obj, name)
        if name in errors or value is None:
            continue
        try:
            check(value)
        except ValidationError as exc:
            errors[name] = exc.messages
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def plan_save(*, plan: Plan) -> Plan:
    _full_clean(plan, LIMIT_FIELDS, ("monthly_budget",))
    plan.save()
    return plan


@transaction.atomic
def tenant_create(
    *,
    name: str,
    slug: str,
    plan: Plan | None = None,
    timezone_name: str = "UTC",
    prepaid: bool = False,
) -> Tenant:
    return tenant_save(
        tenant=Tenant(name=name, slug=slug, plan=plan, timezone=timezone_name, prepaid=prepaid)
    )


@transaction.atomic
def tenant_save(*, tenant: Tenant) -> Tenant:
    """Save a tenant. Its limits may go below those of its keys: the gateway then holds each key to
    the tenant's (gateway/auth.py); `looser_keys_sentence` tells the operator which keys those are."""
    _full_clean(tenant, (*LIMIT_FIELDS, *END_USER_LIMIT_FIELDS))
    tenant.save()
    return tenant


def api_keys_looser_than_tenant(
    *, tenant: Tenant | None = None, plan: Plan | None = None
) -> models.QuerySet[ApiKey]:
    """Active keys (of `tenant`, or of every tenant on `plan`) with a limit above their tenant's,
    as a plan or tenant change can leave them. One query."""
    looser = models.Q()
    annotations = {}
    for name in LIMIT_FIELDS:
        annotations[f"tenant_{name}"] = Coalesce(f"tenant__{name}", f"tenant__plan__{name}")
        looser |= models.Q(**{f"{name}__gt": models.F(f"tenant_{name}")})
    active = ApiKey.objects.filter(status=ApiKey.Status.ACTIVE)
    if tenant is not None:
        active = active.filter(tenant=tenant)
    if plan is not None:
        active = active.filter(tenant__plan=plan)
    return active.annotate(**annotations).filter(looser).order_by("id")


def looser_keys_sentence(*, tenant: Tenant | None = None, plan: Plan | None = None) -> str | None:
    """One sentence naming the keys `api_keys_looser_than_tenant` finds, or None if there are none."""
    shown = 5
    found = list(api_keys_looser_than_tenant(tenant=tenant, plan=plan)[: shown + 1])
    if not found:
        return None
    count = (
        api_keys_looser_than_tenant(tenant=tenant, plan=plan).count() if len(found) > shown else len(found)
    )
    names = ", ".join(f"{key.name} (th-{key.prefix}…)" for key in found[:shown])
    more = f" and {count - shown} more" if count > shown else ""
    return (
        f"{count} active key(s) now have limits above their tenant's, and the gateway holds them to the "
        f"tenant's (saving one asks for limits within the tenant's): {names}{more}."
    )


@transaction.atomic
def membership_save(*, membership: Membership) -> Membership:
    membership.full_clean()
    membership.save()
    return membership


@transaction.atomic
def api_key_issue(
    *,
    tenant: Tenant,
    name: str,
    created_by: Any = None,
    expires_at: datetime | None = None,
    allowed_models: list[str] | None = None,
    allowed_ips: list[str] | None = None,
    rpm_limit: int | None = None,
    tpm_limit: int | None = None,
    concurrency_limit: int | None = None,
) -> IssuedKey:
    raw, prefix, secret = keys.generate()
    api_key = ApiKey(
        tenant=tenant,
        name=name,
        prefix=prefix,
        digest=keys.digest(secret),
        created_by=created_by,
        expires_at=expires_at,
        allowed_models=list(allowed_models or []),
        allowed_ips=list(allowed_ips or []),
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        concurrency_limit=concurrency_limit,
    )
    return IssuedKey(api_key=api_key_save(api_key=api_key), raw=raw)


def unknown_model_names(names: list[str]) -> list[str]:
    """The names in `names` that are neither a route's name nor one of its aliases: a key allowed
    only those could never make a call. (The routes are the gateway's table, read by its label so
    that accounts does not import gateway; there are tens of them, not millions.)"""
    model_route = apps.get_model("gateway", "ModelRoute")
    known: set[str] = set()
    for name, aliases in model_route.objects.values_list("name", "aliases"):
        known.add(name)
        known.update(alias for alias in aliases or [] if isinstance(alias, str))
    return [name for name in names if name not in known]


def unknown_models_sentence(unknown: list[str]) -> str:
    listed = ", ".join(repr(name) for name in unknown[:5]) + (" …" if len(unknown) > 5 else "")
    return f"No model route or alias is named {listed} (GET /v1/models lists them)."


@transaction.atomic
def api_key_save(*, api_key: ApiKey) -> ApiKey:
    """Save a key's settings as they are on the instance (the prefix and digest never change).
    A key looser than its tenant is refused (ApiKey.clean), never silently clamped; so is a key
    allowed a model that no route serves (a typo would refuse every call with a 403)."""
    errors: dict[str, list[str]] = {}
    try:
        _full_clean(api_key, LIMIT_FIELDS)
    except ValidationError as exc:
        errors = exc.message_dict
    if "allowed_models" not in errors:
        unknown = unknown_model_names(api_key.allowed_models)
        if unknown:
            errors["allowed_models"] = [unknown_models_sentence(unknown)]
    if errors:
        raise ValidationError(errors)
    api_key.save()
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    api_key.status = ApiKey.Status.REVOKED
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["status", "revoked_at"])
    return api_key
