"""Writes to accounts: plans, tenants, memberships and API keys.

Every write validates the whole row (`full_clean()`) before saving, whoever calls it: the admin,
the management commands, the console and the API all come through here, so none of them can store
a value the gateway cannot read. A bad value raises ValidationError and stores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, Membership, Plan, Tenant
from accounts.validators import ip_networks


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def validate_allowed_ips(values: list[str]) -> list[str]:
    """The allow-list in the form it is stored (ValidationError naming any entry that is not an
    IP address or CIDR range)."""
    return ip_networks(values)


@transaction.atomic
def plan_save(*, plan: Plan) -> Plan:
    plan.full_clean()
    plan.save()
    return plan


@transaction.atomic
def tenant_create(*, name: str, slug: str, plan: Plan | None = None, timezone_name: str = "UTC") -> Tenant:
    return tenant_save(tenant=Tenant(name=name, slug=slug, plan=plan, timezone=timezone_name))


@transaction.atomic
def tenant_save(*, tenant: Tenant) -> Tenant:
    tenant.full_clean()
    tenant.save()
    return tenant


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


@transaction.atomic
def api_key_save(*, api_key: ApiKey) -> ApiKey:
    """Save a key's settings as they are on the instance (the prefix and digest never change)."""
    api_key.full_clean()
    api_key.save()
    return api_key


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    api_key.status = ApiKey.Status.REVOKED
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["status", "revoked_at"])
    return api_key
