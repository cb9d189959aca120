"""Reads of accounts, always scoped: the console's access helpers and the gateway's key lookup.

Every tenant page goes through `tenant_for_user`, and every object of a tenant through one helper of
its own here, so another tenant's object is a 404 (never a 403 that would confirm it exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import ApiKey, Membership, Tenant

NOT_FOUND = "No such page."


def memberships_for_user(user: Any) -> QuerySet[Membership]:
    """The user's tenants (for the tenant switcher and the landing page), by tenant name."""
    if not getattr(user, "is_authenticated", False):
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name", "tenant_id")


def tenant_for_user(user: Any, slug: str) -> tuple[Tenant, Membership]:
    """The tenant `slug` and the user's membership of it, or Http404 if the user is not a member
    (or not signed in, or the tenant does not exist: the three look the same)."""
    if not getattr(user, "is_authenticated", False) or not isinstance(slug, str) or len(slug) > 100:
        raise Http404(NOT_FOUND)
    membership = (
        Membership.objects.select_related("tenant", "tenant__plan")
        .filter(user=user, tenant__slug=slug)
        .first()
    )
    if membership is None:
        raise Http404(NOT_FOUND)
    return membership.tenant, membership


def _pk(value: Any) -> int:
    try:
        pk = int(value)
    except (TypeError, ValueError):
        raise Http404(NOT_FOUND) from None
    if not 0 < pk < 2**63:
        raise Http404(NOT_FOUND)
    return pk


def api_keys_for_tenant(tenant: Tenant) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(tenant=tenant).order_by("-created_at", "-id")


def api_key_for_user(user: Any, tenant: Tenant, key_id: Any) -> ApiKey:
    """One of `tenant`'s keys, for a user already admitted to `tenant` (by `tenant_for_user`):
    Http404 for an id that is not the tenant's."""
    key = (
        ApiKey.objects.filter(tenant=tenant, pk=_pk(key_id)).select_related("tenant", "tenant__plan").first()
    )
    if key is None:
        raise Http404(NOT_FOUND)
    return key


@dataclass(frozen=True)
class KeyLookup:
    """A key found by one of its public prefixes: the row, the digest of the secret that goes with
    that prefix, and until when that secret works (None: as long as the key does)."""

    api_key: ApiKey
    digest: str
    valid_until: datetime | None


def api_key_by_prefix(prefix: str) -> KeyLookup | None:
    """The gateway's lookup (gateway/auth.py): the key whose current prefix is `prefix`, or whose
    previous prefix is, during and after the grace period of a rotation (the caller refuses the
    previous secret once `valid_until` has passed, so the answer can be cached)."""
    # One query (both columns are uniquely indexed); a current prefix wins over a previous one.
    found = list(
        ApiKey.objects.select_related("tenant__plan").filter(Q(prefix=prefix) | Q(previous_prefix=prefix))[:2]
    )
    for key in found:
        if key.prefix == prefix:
            return KeyLookup(api_key=key, digest=key.digest, valid_until=None)
    for key in found:
        if key.previous_valid_until is not None:
            return KeyLookup(api_key=key, digest=key.previous_digest, valid_until=key.previous_valid_until)
    return None
