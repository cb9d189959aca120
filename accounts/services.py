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
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import keys, tokens
from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import LIMIT_FIELDS, ApiKey, Membership, PersonalAccessToken, Plan, Tenant
from accounts.validators import ip_networks
from config.changes import publish_on_commit

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

# What the audit log records of each (never a digest or a secret).
TENANT_AUDIT_FIELDS = (
    "name",
    "slug",
    "plan",
    "status",
    "timezone",
    *LIMIT_FIELDS,
    *END_USER_LIMIT_FIELDS,
    "prepaid",
    "body_logging",
)
KEY_AUDIT_FIELDS = (
    "name",
    "prefix",
    "status",
    "expires_at",
    "allowed_models",
    "allowed_ips",
    *LIMIT_FIELDS,
    "cache",
    "cache_ttl",
    "previous_prefix",
    "previous_valid_until",
)
MEMBERSHIP_AUDIT_FIELDS = ("user", "role")


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


PLAN_AUDIT_FIELDS = ("name", *LIMIT_FIELDS, "monthly_budget", "allowed_models")


@transaction.atomic
def plan_save(*, plan: Plan, actor: Actor | None = None) -> Plan:
    """Save a plan. Its allowed models must each be a route or an alias (a typo would refuse every
    call of every tenant on it with a 403). A plan belongs to no tenant: its audit row is
    gateway-wide (tenant None)."""
    errors: dict[str, list[str]] = {}
    try:
        _full_clean(plan, LIMIT_FIELDS, ("monthly_budget",))
    except ValidationError as exc:
        errors = exc.message_dict
    if "allowed_models" not in errors:
        unknown = unknown_model_names(plan.allowed_models)
        if unknown:
            errors["allowed_models"] = [unknown_models_sentence(unknown)]
    if errors:
        raise ValidationError(errors)
    stored = Plan.objects.filter(pk=plan.pk).first() if plan.pk else None
    before = audit_snapshot(stored, PLAN_AUDIT_FIELDS)
    plan.save()
    after = audit_snapshot(plan, PLAN_AUDIT_FIELDS)
    if before != after:
        action = "plan.create" if stored is None else "plan.change"
        audit_record(tenant=None, actor=actor, action=action, target=plan, before=before, after=after)
    return plan


@transaction.atomic
def plan_delete(*, plan: Plan, actor: Actor | None = None) -> None:
    """Delete a plan no tenant is on; a plan in use is refused (ValidationError), deleting nothing."""
    locked = Plan.objects.select_for_update().get(pk=plan.pk)
    in_use = Tenant.objects.filter(plan=locked).count()
    if in_use:
        raise ValidationError(
            f"The plan “{locked.name}” is in use by {in_use} tenant(s): move them to another plan "
            "first, then delete it.",
            code="plan_in_use",
        )
    audit_record(
        tenant=None,
        actor=actor,
        action="plan.delete",
        target=locked,
        before=audit_snapshot(locked, PLAN_AUDIT_FIELDS),
        after=None,
    )
    locked.delete()


@transaction.atomic
def tenant_create(
    *,
    name: str,
    slug: str,
    plan: Plan | None = None,
    timezone_name: str = "UTC",
    prepaid: bool = False,
    actor: Actor | None = None,
) -> Tenant:
    return tenant_save(
        tenant=Tenant(name=name, slug=slug, plan=plan, timezone=timezone_name, prepaid=prepaid), actor=actor
    )


@transaction.atomic
def tenant_save(*, tenant: Tenant, actor: Actor | None = None) -> Tenant:
    """Save a tenant. Its limits may go below those of its keys: the gateway then holds each key to
    the tenant's (gateway/auth.py); `looser_keys_sentence` tells the operator which keys those are."""
    _full_clean(tenant, (*LIMIT_FIELDS, *END_USER_LIMIT_FIELDS))
    stored = Tenant.objects.filter(pk=tenant.pk).first() if tenant.pk else None
    before = audit_snapshot(stored, TENANT_AUDIT_FIELDS)
    tenant.save()
    after = audit_snapshot(tenant, TENANT_AUDIT_FIELDS)
    if before != after:
        action = "tenant.create" if stored is None else "tenant.change"
        audit_record(tenant=tenant, actor=actor, action=action, target=tenant, before=before, after=after)
    return tenant


@transaction.atomic
def tenant_status_set(*, tenant: Tenant, status: str, actor: Actor | None = None) -> Tenant:
    """Suspend (status "suspended") or resume ("active") a tenant. The row's broadcast
    (config/changes.py) makes every gateway process drop its cached copy at commit, so a suspended
    tenant's next call gets 403 `tenant_suspended` everywhere (gateway/auth.py). Setting the status
    it already has changes nothing and records nothing."""
    if status not in Tenant.Status.values:
        raise ValidationError({"status": "Choose active or suspended."})
    locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if locked.status != status:
        before = {"status": locked.status}
        locked.status = status
        locked.save(update_fields=["status"])
        action = "tenant.suspend" if status == Tenant.Status.SUSPENDED else "tenant.resume"
        audit_record(
            tenant=locked, actor=actor, action=action, target=locked, before=before, after={"status": status}
        )
    tenant.status = locked.status
    return tenant


@transaction.atomic
def operator_view_record(*, tenant: Tenant, user: Any, path: str, method: str) -> None:
    """An operator opened one of `tenant`'s console pages without being a member (read-only, see
    accounts.access.tenant_page): every such visit is in the tenant's audit log, naming the page."""
    audit_record(
        tenant=tenant,
        actor=Actor.console(user),
        action="tenant.operator_view",
        target=tenant,
        before=None,
        after={"path": path[:500], "method": method[:10]},
        object_repr=path,
    )


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
def membership_save(*, membership: Membership, actor: Actor | None = None) -> Membership:
    membership.full_clean()
    stored = Membership.objects.filter(pk=membership.pk).first() if membership.pk else None
    before = audit_snapshot(stored, MEMBERSHIP_AUDIT_FIELDS)
    membership.save()
    after = audit_snapshot(membership, MEMBERSHIP_AUDIT_FIELDS)
    if before != after:
        action = "member.add" if stored is None else "member.role"
        audit_record(
            tenant=membership.tenant,
            actor=actor,
            action=action,
            target=membership,
            before=before,
            after=after,
        )
    return membership


def validate_new_expiry(expires_at: datetime | None) -> None:
    """A new key expires in the future, or never (one issued already expired is a mistake)."""
    if expires_at is not None and (timezone.is_naive(expires_at) or expires_at <= timezone.now()):
        raise ValidationError("The expiry must be a moment in the future.")


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
    cache: bool = False,
    cache_ttl: int | None = None,
    actor: Actor | None = None,
) -> IssuedKey:
    try:
        validate_new_expiry(expires_at)
    except ValidationError as exc:
        raise ValidationError({"expires_at": exc.messages}) from None
    raw, prefix, secret = keys.generate()
    if created_by is None and actor is not None:
        created_by = actor.user
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
        cache=cache,
        cache_ttl=cache_ttl,
    )
    return IssuedKey(api_key=api_key_save(api_key=api_key, actor=actor), raw=raw)


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
def api_key_save(*, api_key: ApiKey, actor: Actor | None = None) -> ApiKey:
    """Save a key's settings as they are on the instance (the prefix and digest change only by
    rotation). A key looser than its tenant is refused (ApiKey.clean), never silently clamped; so is
    a key allowed a model that no route serves (a typo would refuse every call with a 403)."""
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
    stored = ApiKey.objects.filter(pk=api_key.pk).first() if api_key.pk else None
    before = audit_snapshot(stored, KEY_AUDIT_FIELDS)
    api_key.save()
    after = audit_snapshot(api_key, KEY_AUDIT_FIELDS)
    if before != after:
        audit_record(
            tenant=api_key.tenant,
            actor=actor,
            action="key.issue" if stored is None else "key.change",
            target=api_key,
            before=before,
            after=after,
        )
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor: Actor | None = None) -> ApiKey:
    before = audit_snapshot(api_key, KEY_AUDIT_FIELDS)
    api_key.status = ApiKey.Status.REVOKED
    api_key.revoked_at = timezone.now()
    # A revoked key's previous secret stops too (it is the same key).
    api_key.previous_valid_until = None if api_key.previous_prefix is None else api_key.revoked_at
    api_key.save(update_fields=["status", "revoked_at", "previous_valid_until"])
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action="key.revoke",
        target=api_key,
        before=before,
        after=audit_snapshot(api_key, KEY_AUDIT_FIELDS),
    )
    return api_key


# A rotation's grace period: how long the previous secret keeps working beside the new one.
MAX_ROTATION_GRACE = timedelta(days=30)


@transaction.atomic
def api_key_rotate(*, api_key: ApiKey, grace: timedelta, actor: Actor | None = None) -> IssuedKey:
    """Give a key a new secret (and public prefix); the previous one keeps working for `grace`,
    then stops. The key keeps its row and id, so its budgets, spend and rate-limit windows (counted
    by key id and budget id) carry on untouched. A previous secret still in an earlier grace period
    stops now: a key has at most two working secrets. The change reaches every gateway worker at
    commit (the row's broadcast names both prefixes)."""
    if not isinstance(grace, timedelta) or not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
        raise ValidationError({"grace": f"The grace period is from 0 to {MAX_ROTATION_GRACE.days} days."})
    locked = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    if locked.status != ApiKey.Status.ACTIVE:
        raise ValidationError("A revoked key cannot be rotated: issue a new one.")
    before = audit_snapshot(locked, KEY_AUDIT_FIELDS)
    old_prefix, replaced = locked.prefix, locked.previous_prefix
    now = timezone.now()
    raw, prefix, secret = keys.generate()
    locked.previous_prefix = old_prefix
    locked.previous_digest = locked.digest
    locked.previous_valid_until = now + grace
    locked.prefix = prefix
    locked.digest = keys.digest(secret)
    locked.rotated_at = now
    # The broadcast of this save names the new prefix and the previous one (ApiKeyQuerySet); the
    # one that an earlier rotation left behind is dropped from the caches too.
    locked.save(
        update_fields=[
            "prefix",
            "digest",
            "previous_prefix",
            "previous_digest",
            "previous_valid_until",
            "rotated_at",
        ]
    )
    if replaced:
        publish_on_commit([{"kind": "key", "prefix": replaced}])
    audit_record(
        tenant=locked.tenant,
        actor=actor,
        action="key.rotate",
        target=locked,
        before=before,
        after={
            **(audit_snapshot(locked, KEY_AUDIT_FIELDS) or {}),
            "grace_seconds": int(grace.total_seconds()),
        },
    )
    for field in (
        "prefix",
        "digest",
        "previous_prefix",
        "previous_digest",
        "previous_valid_until",
        "rotated_at",
    ):
        setattr(api_key, field, getattr(locked, field))
    return IssuedKey(api_key=api_key, raw=raw)


@transaction.atomic
def api_key_delete(*, api_key: ApiKey, actor: Actor | None = None) -> None:
    """Delete a key outright (the admin's delete; the console revokes instead). Recorded with what the
    key was, in the same transaction."""
    audit_record(
        tenant=api_key.tenant,
        actor=actor,
        action="key.delete",
        target=api_key,
        before=audit_snapshot(api_key, KEY_AUDIT_FIELDS),
        after=None,
    )
    api_key.delete()


# --- personal access tokens (the management API, /api/v1/) -------------------------------------------

# A token always expires, at most this far ahead: a forgotten token stops on its own.
MAX_TOKEN_LIFETIME = timedelta(days=366)
TOKEN_AUDIT_FIELDS = ("user", "name", "prefix", "expires_at", "revoked_at")


@dataclass(frozen=True)
class IssuedToken:
    token: PersonalAccessToken
    raw: str  # shown once, never stored


def _token_audit(*, token: PersonalAccessToken, actor: Actor | None, action: str, before: Any) -> None:
    """A token acts in each of its user's tenants, so its creation and revocation are written to the
    audit log of each (one row per tenant the user belongs to at that moment); for a user in no
    tenant (an operator), one gateway-wide row (the operator's audit log)."""
    after = audit_snapshot(token, TOKEN_AUDIT_FIELDS)
    tenants: list[Tenant | None] = [
        m.tenant for m in Membership.objects.filter(user_id=token.user_id).select_related("tenant")
    ]
    for tenant in tenants or [None]:
        audit_record(tenant=tenant, actor=actor, action=action, target=token, before=before, after=after)


@transaction.atomic
def personal_token_create(
    *, user: Any, name: str, expires_at: datetime, actor: Actor | None = None
) -> IssuedToken:
    """A new token for `user`, expiring at `expires_at` (in the future, at most MAX_TOKEN_LIFETIME
    ahead). Only its prefix and digest are stored; the raw token is returned this once."""
    now = timezone.now()
    if not isinstance(expires_at, datetime) or timezone.is_naive(expires_at) or expires_at <= now:
        raise ValidationError({"expires_at": "The expiry must be a moment in the future."})
    if expires_at > now + MAX_TOKEN_LIFETIME:
        raise ValidationError(
            {"expires_at": f"A token expires at most {MAX_TOKEN_LIFETIME.days} days from now."}
        )
    raw, prefix, secret = tokens.generate()
    token = PersonalAccessToken(
        user=user,
        name=(name or "").strip(),
        prefix=prefix,
        digest=tokens.digest(secret),
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    _token_audit(token=token, actor=actor, action="token.create", before=None)
    return IssuedToken(token=token, raw=raw)


@transaction.atomic
def personal_token_revoke(*, token: PersonalAccessToken, actor: Actor | None = None) -> PersonalAccessToken:
    """Revoke a token: it stops working at once (it is checked on every call). Revoking a revoked
    token changes nothing."""
    locked = PersonalAccessToken.objects.select_for_update().get(pk=token.pk)
    if locked.revoked_at is not None:
        token.revoked_at = locked.revoked_at
        return token
    before = audit_snapshot(locked, TOKEN_AUDIT_FIELDS)
    locked.revoked_at = timezone.now()
    locked.save(update_fields=["revoked_at"])
    token.revoked_at = locked.revoked_at
    _token_audit(token=locked, actor=actor, action="token.revoke", before=before)
    return token


def personal_token_touch(*, token: PersonalAccessToken, every: timedelta = timedelta(minutes=1)) -> None:
    """Note that a token was used: at most one UPDATE per token per `every`, and only the one
    process whose conditional UPDATE wins writes it (the others find it fresh)."""
    now = timezone.now()
    if token.last_used_at is not None and token.last_used_at > now - every:
        return
    PersonalAccessToken.objects.filter(pk=token.pk).filter(
        models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lte=now - every)
    ).update(last_used_at=now)
    token.last_used_at = now
