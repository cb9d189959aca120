"""Writes to accounts: tenants and API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from ipaddress import ip_network
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import keys
from accounts.models import ApiKey, Plan, Tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown once, never stored


def validate_allowed_ips(values: list[str]) -> list[str]:
    normalized = []
    for value in values:
        try:
            normalized.append(str(ip_network(value.strip(), strict=False)))
        except ValueError as exc:
            raise ValidationError(f"{value!r} is not an IP address or CIDR range.") from exc
    return normalized


@transaction.atomic
def tenant_create(*, name: str, slug: str, plan: Plan | None = None, timezone_name: str = "UTC") -> Tenant:
    return Tenant.objects.create(name=name, slug=slug, plan=plan, timezone=timezone_name)


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
    budget: Decimal | None = None,
) -> IssuedKey:
    raw, prefix, secret = keys.generate()
    api_key = ApiKey.objects.create(
        tenant=tenant,
        name=name,
        prefix=prefix,
        digest=keys.digest(secret),
        created_by=created_by,
        expires_at=expires_at,
        allowed_models=list(allowed_models or []),
        allowed_ips=validate_allowed_ips(list(allowed_ips or [])),
        rpm_limit=rpm_limit,
        tpm_limit=tpm_limit,
        concurrency_limit=concurrency_limit,
        budget=budget,
    )
    return IssuedKey(api_key=api_key, raw=raw)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    api_key.status = ApiKey.Status.REVOKED
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["status", "revoked_at"])
    return api_key
