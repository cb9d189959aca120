"""Reads of accounts, always scoped: the console's access helpers and the gateway's key lookup.

Every tenant page goes through `tenant_for_user`, and every object of a tenant through one helper of
its own here, so another tenant's object is a 404 (never a 403 that would confirm it exists).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
from django.http import Http404
from django.utils import timezone

from accounts.models import (
    ApiKey,
    AuditEntry,
    Invitation,
    Membership,
    PersonalAccessToken,
    Plan,
    SigningKey,
    Tenant,
)
from accounts.permissions import is_operator

NOT_FOUND = "No such page."


def memberships_for_user(user: Any) -> QuerySet[Membership]:
    """The user's tenants (for the tenant switcher and the landing page), by tenant name."""
    if not getattr(user, "is_authenticated", False):
        return Membership.objects.none()
    return Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name", "tenant_id")


def tenant_for_user(user: Any, slug: str, *, operator_view: bool = False) -> tuple[Tenant, Membership]:
    """The tenant `slug` and the user's membership of it, or Http404 if the user is not a member
    (or not signed in, or the tenant does not exist: the three look the same).

    With `operator_view` (the console's pages, accounts.access.tenant_page, which audits each such
    visit), an operator (accounts.permissions.is_operator) who is not a member gets an operator's
    view: an unsaved membership with the viewer role (`is_operator_view`), so the permission table
    lets them see what a viewer sees and change nothing. An operator who is a member keeps their
    own role. (The management API's operators use its operator endpoints instead.)"""
    if not getattr(user, "is_authenticated", False) or not isinstance(slug, str) or len(slug) > 100:
        raise Http404(NOT_FOUND)
    membership = (
        Membership.objects.select_related("tenant", "tenant__plan")
        .filter(user=user, tenant__slug=slug)
        .first()
    )
    if membership is not None:
        return membership.tenant, membership
    if operator_view and is_operator(user):
        tenant = Tenant.objects.select_related("plan").filter(slug=slug).first()
        if tenant is not None:
            return tenant, Membership(tenant=tenant, user=user, role=Membership.Role.VIEWER)
    raise Http404(NOT_FOUND)


def is_operator_view(membership: Membership | None) -> bool:
    """Is this the read-only view `tenant_for_user` gives an operator who is not a member? (A real
    membership is a stored row.)"""
    return membership is not None and membership.pk is None


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


# --- members, invitations, signing keys, audit (the members, signing-keys and audit pages) -------------


def members_of_tenant(tenant: Tenant) -> QuerySet[Membership]:
    """The tenant's members, owners first, then by address."""
    order = Case(
        *(When(role=role, then=Value(rank)) for rank, role in enumerate(Membership.Role.values)),
        output_field=IntegerField(),
    )
    return (
        Membership.objects.filter(tenant=tenant)
        .select_related("user")
        .annotate(role_rank=order)
        .order_by("role_rank", "user__email", "id")
    )


def member_for_tenant(tenant: Tenant, member_id: Any) -> Membership:
    """One of `tenant`'s memberships (by its id), or Http404."""
    member = (
        Membership.objects.filter(tenant=tenant, pk=_pk(member_id)).select_related("tenant", "user").first()
    )
    if member is None:
        raise Http404(NOT_FOUND)
    return member


def invitations_open(tenant: Tenant) -> QuerySet[Invitation]:
    """Invitations not yet accepted, revoked or expired, newest first."""
    return (
        Invitation.objects.filter(
            tenant=tenant, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .select_related("invited_by")
        .order_by("-created_at", "-id")
    )


def invitation_for_tenant(tenant: Tenant, invitation_id: Any) -> Invitation:
    """One of `tenant`'s invitations (by its id), or Http404."""
    invitation = (
        Invitation.objects.filter(tenant=tenant, pk=_pk(invitation_id)).select_related("tenant").first()
    )
    if invitation is None:
        raise Http404(NOT_FOUND)
    return invitation


def signing_keys_of_tenant(tenant: Tenant) -> QuerySet[SigningKey]:
    """Active keys first, then newest first."""
    return SigningKey.objects.filter(tenant=tenant).order_by("-active", "-created_at", "-id")


def signing_key_for_tenant(tenant: Tenant, signing_key_id: Any) -> SigningKey:
    """One of `tenant`'s signing keys (by its id), or Http404."""
    found = SigningKey.objects.filter(tenant=tenant, pk=_pk(signing_key_id)).select_related("tenant").first()
    if found is None:
        raise Http404(NOT_FOUND)
    return found


# What the audit page filters by: object type (AuditEntry.object_type) -> label.
AUDIT_OBJECT_TYPES = {
    "accounts.apikey": "API keys",
    "accounts.membership": "Members and roles",
    "accounts.invitation": "Invitations",
    "accounts.signingkey": "Signing keys",
    "accounts.personalaccesstoken": "API tokens",
    "accounts.tenant": "Tenant limits",
    "billing.budget": "Budgets",
    "billing.creditentry": "Credits",
}
AUDIT_PAGE_SIZE = 50


class AuditCursorError(ValueError):
    """A `cursor` that is not one this page made."""


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: str  # "" on the last page


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _audit_cursor(entry: AuditEntry) -> str:
    # Whole microseconds since the epoch: exact, unlike a float timestamp.
    return f"{(entry.created_at - _EPOCH) // _MICROSECOND}_{entry.pk}"


def _parse_audit_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, _, pk = cursor.partition("_")
        if len(cursor) > 40 or not stamp.isdigit() or not pk.isdigit():
            raise ValueError(cursor)
        return _EPOCH + int(stamp) * _MICROSECOND, _pk(pk)
    except (ValueError, OverflowError, OSError, Http404):
        raise AuditCursorError(cursor[:40]) from None


def _audit_keyset(entries: QuerySet[AuditEntry], cursor: str, size: int) -> AuditPage:
    """A page of `entries`, newest first, after `cursor` (keyset: (created_at, id) below the last
    row shown; never an OFFSET)."""
    if cursor:
        when, pk = _parse_audit_cursor(cursor)
        entries = entries.filter(Q(created_at__lt=when) | Q(created_at=when, pk__lt=pk))
    rows = list(entries.order_by("-created_at", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return AuditPage(entries=rows, next_cursor=_audit_cursor(rows[-1]) if more else "")


def audit_page(
    tenant: Tenant, *, object_type: str | None = None, cursor: str = "", size: int = AUDIT_PAGE_SIZE
) -> AuditPage:
    """One page of the tenant's audit log, newest first, after `cursor` (read off the
    (tenant, created_at, id) index)."""
    entries = AuditEntry.objects.filter(tenant=tenant)
    if object_type:
        entries = entries.filter(object_type=object_type)
    return _audit_keyset(entries.select_related("actor_user"), cursor, size)


@dataclass(frozen=True)
class AuditFilter:
    """What the operator's audit log (/ops/audit/) is narrowed to; every part optional."""

    tenant: Tenant | None = None
    operator_only: bool = False  # only changes that belong to no tenant (the operator's own objects)
    actor: str = ""  # part of the actor's label, any case ("alice@", "command:", "api:")
    object_type: str = ""  # exactly, e.g. "accounts.apikey"
    object_id: str = ""  # exactly
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


def audit_page_all(query: AuditFilter, *, cursor: str = "", size: int = AUDIT_PAGE_SIZE) -> AuditPage:
    """One page of every tenant's audit log (and the operator's own changes), newest first, after
    `cursor`, narrowed by `query`. For operators only: the caller checks (accounts.access.operator_page)."""
    entries = AuditEntry.objects.all()
    if query.tenant is not None:
        entries = entries.filter(tenant=query.tenant)
    elif query.operator_only:
        entries = entries.filter(tenant__isnull=True)
    if query.actor:
        entries = entries.filter(actor__icontains=query.actor)
    if query.object_type:
        entries = entries.filter(object_type=query.object_type)
    if query.object_id:
        entries = entries.filter(object_id=query.object_id)
    if query.start is not None:
        entries = entries.filter(created_at__gte=query.start)
    if query.end is not None:
        entries = entries.filter(created_at__lt=query.end)
    return _audit_keyset(entries.select_related("actor_user", "tenant"), cursor, size)


def audit_changes(entry: AuditEntry) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field the entry changed; every field for a creation or a deletion."""
    before, after = entry.before or {}, entry.after or {}
    names = list(dict.fromkeys([*before, *after]))
    if entry.before is not None and entry.after is not None:
        names = [name for name in names if before.get(name) != after.get(name)]
    return [(name, _shown(before.get(name)), _shown(after.get(name))) for name in names]


def _shown(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(map(str, value)) if value else "[]"
    return value


# --- personal access tokens (the management API) ------------------------------------------------------


def personal_tokens_of_user(user: Any) -> QuerySet[PersonalAccessToken]:
    """The user's tokens, newest first."""
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at", "-id")


def personal_token_for_user(user: Any, token_id: Any) -> PersonalAccessToken:
    """One of the user's own tokens (by its id), or Http404."""
    token = PersonalAccessToken.objects.filter(user=user, pk=_pk(token_id)).first()
    if token is None:
        raise Http404(NOT_FOUND)
    return token


def personal_token_by_prefix(prefix: str) -> PersonalAccessToken | None:
    """The API's lookup (accounts/api/authentication.py): the token with this public prefix, with its user."""
    return PersonalAccessToken.objects.select_related("user").filter(prefix=prefix).first()


# --- the operator's tenants and plans pages (/ops/) ---------------------------------------------------

TENANT_PAGE_SIZE = 50


@dataclass(frozen=True)
class TenantPage:
    tenants: list[Tenant]
    next_cursor: str  # "" on the last page


def tenants_page(
    *,
    search: str = "",
    status: str = "",
    plan: Plan | None = None,
    cursor: str = "",
    size: int = TENANT_PAGE_SIZE,
) -> TenantPage:
    """One page of every tenant, newest first, matching `search` (in the name or the slug), `status`
    and `plan`; keyset-paginated on the id (`cursor`: the last id shown; Http404 for a bad one)."""
    tenants = Tenant.objects.select_related("plan")
    if search:
        tenants = tenants.filter(Q(name__icontains=search) | Q(slug__icontains=search))
    if status:
        tenants = tenants.filter(status=status)
    if plan is not None:
        tenants = tenants.filter(plan=plan)
    if cursor:
        tenants = tenants.filter(pk__lt=_pk(cursor))
    rows = list(tenants.order_by("-pk")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return TenantPage(tenants=rows, next_cursor=str(rows[-1].pk) if more else "")


def tenant_for_operator(slug: Any) -> Tenant:
    """Any tenant, by slug, for an operator's page (accounts.access.operator_page), or Http404."""
    if not isinstance(slug, str) or len(slug) > 100:
        raise Http404(NOT_FOUND)
    tenant = Tenant.objects.select_related("plan").filter(slug=slug).first()
    if tenant is None:
        raise Http404(NOT_FOUND)
    return tenant


def tenant_owners(tenant: Tenant) -> list[Membership]:
    return list(members_of_tenant(tenant).filter(role=Membership.Role.OWNER)[:20])


def plans_with_tenants() -> QuerySet[Plan]:
    """Every plan with how many tenants are on it (`tenant_count`), by name."""
    return Plan.objects.annotate(tenant_count=Count("tenants")).order_by("name", "pk")


def plan_for_operator(plan_id: Any) -> Plan:
    plan = Plan.objects.filter(pk=_pk(plan_id)).first()
    if plan is None:
        raise Http404(NOT_FOUND)
    return plan
