"""Who a person signing in through single sign-on becomes: their account, the operator role, and
their tenant memberships, read from the verified claims at every sign-in (accounts/sso.py).

- The account: the one linked to the provider's (`iss`, `sub`) before; else the one account with the
  claimed email address (linked now, unless the provider says `email_verified: false`); else a new
  account with that address (no password: it signs in through the provider).
- The operator role (TOLLHOUSE_OIDC_OPERATOR_CLAIM / _OPERATOR_VALUES): a claim value among the
  operator values makes the user staff and puts them in the operators group
  (accounts.permissions.OPERATOR_GROUP); when a later sign-in's claims no longer say so, the role is
  taken back, but only if single sign-on granted it (SsoIdentity.operator_from_sso).
- Tenant memberships (TOLLHOUSE_OIDC_TENANTS_CLAIM; format in `tenant_grants`): added, role changed
  and removed to match the claim, through the members' services (so the audit log records each, and
  a tenant keeps its last owner) — only memberships that single sign-on made (Membership.source);
  memberships made by hand are left as they are. A tenant or role the claim names that does not
  exist is skipped with a log line, never an error.
- Every sign-in writes an `sso.sign_in` audit row in each tenant the user is then a member of (or
  one gateway-wide row when they are in none); operator role changes are gateway-wide rows.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.members import member_remove, member_role_change, normalize_email, normalize_name
from accounts.models import Membership, SsoIdentity, Tenant
from accounts.permissions import OPERATOR_GROUP
from accounts.services import membership_save
from accounts.sso import SsoError
from config.sso import OidcSettings

logger = logging.getLogger(__name__)

Role = Membership.Role
# When a claim names one tenant more than once, the strongest role wins.
ROLE_RANK: dict[str, int] = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}
MAX_GRANTS = 500  # entries of the tenants claim read at most (a claim is not a bulk import)


def claim_values(claims: dict[str, Any], name: str) -> set[str]:
    """A claim as a set of strings: a string is one value; a list gives its string items."""
    value = claims.get(name)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {item for item in value if isinstance(item, str)}
    return set()


def tenant_grants(value: Any) -> tuple[dict[str, str], list[str]]:
    """The tenants claim as {tenant slug: role}, and what was skipped (for the log).

    Accepted shapes:
    - a list of "slug:role" strings: ["acme:admin", "globex:viewer"];
    - one such string, or several separated by spaces or commas: "acme:admin globex:viewer";
    - an object of slug to role: {"acme": "admin", "globex": "viewer"}.
    A role is owner, admin, member or viewer (any case). Anything else in the claim (another group
    name, a bad role) is skipped. A slug named twice gets the stronger role.
    """
    pairs: list[tuple[Any, Any]] = []
    skipped: list[str] = []
    if value is None:
        return {}, []
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        if isinstance(value, str):
            items: list[Any] = value.replace(",", " ").split()
        elif isinstance(value, list):
            items = value
        else:
            return {}, [f"the claim is a {type(value).__name__}, not a list, a string or an object"]
        for item in items:
            if isinstance(item, str) and item.count(":") == 1:
                slug, role = item.split(":")
                pairs.append((slug, role))
            else:
                skipped.append(f"{str(item)[:60]!r} is not slug:role")
    grants: dict[str, str] = {}
    for slug, role in pairs[:MAX_GRANTS]:
        if not isinstance(slug, str) or not isinstance(role, str) or not slug.strip():
            skipped.append(f"{str(slug)[:60]!r}: {str(role)[:20]!r} is not a tenant and a role")
            continue
        slug, role = slug.strip(), role.strip().lower()
        if role not in ROLE_RANK:
            skipped.append(f"{slug[:60]!r}: unknown role {role[:20]!r}")
            continue
        if slug not in grants or ROLE_RANK[role] > ROLE_RANK[grants[slug]]:
            grants[slug] = role
    if len(pairs) > MAX_GRANTS:
        skipped.append(f"{len(pairs) - MAX_GRANTS} entries beyond the first {MAX_GRANTS}")
    return grants, skipped


def _refuse(message: str, reason: str) -> SsoError:
    return SsoError(message, reason=reason)


@transaction.atomic
def sso_sign_in(*, config: OidcSettings, claims: dict[str, Any]) -> Any:
    """The account the verified `claims` sign in to, with its operator role and memberships synced."""
    issuer, subject = str(claims["iss"]), str(claims["sub"])
    try:
        email = normalize_email(str(claims.get(config.email_claim) or ""))
    except ValidationError:
        raise _refuse(
            f"The identity provider sent no usable email address (claim {config.email_claim!r}).",
            f"claim {config.email_claim!r} is missing or not an email address",
        ) from None
    try:
        name = normalize_name(str(claims.get(config.name_claim) or ""))
    except ValidationError:
        name = ""
    identity = (
        SsoIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=issuer, subject=subject)
        .first()
    )
    if identity is None:
        identity = _link(issuer=issuer, subject=subject, email=email, name=name, claims=claims)
    user = identity.user
    if not user.is_active:
        raise _refuse(
            "This account is deactivated: ask an operator.",
            f"sign-in of deactivated user#{user.pk}",
        )
    _sync_profile(user, email=email, name=name)
    actor = Actor.sso(user)
    if config.operator_claim is not None:
        _sync_operator(
            identity,
            granted=bool(claim_values(claims, config.operator_claim) & config.operator_values),
            actor=actor,
        )
    if config.tenants_claim is not None:
        _sync_memberships(user, claims.get(config.tenants_claim), actor=actor)
    identity.last_sign_in_at = timezone.now()
    identity.save(update_fields=["last_sign_in_at", "operator_from_sso"])
    memberships = list(Membership.objects.filter(user=user).select_related("tenant", "user"))
    for membership in memberships:
        audit_record(
            tenant=membership.tenant,
            actor=actor,
            action="sso.sign_in",
            target=membership,
            before=None,
            after={"user": email, "role": membership.role, "via": config.name},
        )
    if not memberships:  # an operator, or someone in no tenant yet: in the gateway-wide log
        audit_record(
            tenant=None,
            actor=actor,
            action="sso.sign_in",
            target=user,
            before=None,
            after={"user": email, "via": config.name},
        )
    logger.info("sso: user#%s signed in (issuer %s)", user.pk, issuer)
    return user


def _link(*, issuer: str, subject: str, email: str, name: str, claims: dict[str, Any]) -> SsoIdentity:
    """A first sign-in: link the one account with this address, or create one."""
    User = get_user_model()
    matches = list(User._default_manager.filter(email__iexact=email)[:2])
    if len(matches) > 1:
        raise _refuse(
            f"Several accounts have the address {email}: an operator has to sort them out first.",
            "several accounts share the claimed email address",
        )
    if matches:
        if claims.get("email_verified") is False:
            raise _refuse(
                f"An account with {email} exists, and the identity provider has not verified that the "
                "address is yours: sign in with your password, or verify the address at the provider.",
                "claimed email matches an account but email_verified is false",
            )
        user = matches[0]
        logger.info("sso: user#%s linked to a new identity (issuer %s)", user.pk, issuer)
    else:
        username = email if len(email) <= 150 else f"sso-{secrets.token_hex(8)}"
        if User._default_manager.filter(username=username).exists():
            username = f"{email[:130]}-{secrets.token_hex(4)}"
        user = User._default_manager.create_user(username=username, email=email, first_name=name[:150])
        user.set_unusable_password()
        user.save(update_fields=["password"])
        logger.info("sso: user#%s created (issuer %s)", user.pk, issuer)
    try:
        with transaction.atomic():
            return SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    except IntegrityError:  # the same person's first sign-in in another tab at the same moment
        raise _refuse(
            "This sign-in crossed another one of yours: start again.", "identity created concurrently"
        ) from None


def _sync_profile(user: Any, *, email: str, name: str) -> None:
    """Keep the account's address and name as the provider says, unless another account has that address."""
    changed = []
    if (user.email or "").lower() != email:
        User = get_user_model()
        if not User._default_manager.filter(email__iexact=email).exclude(pk=user.pk).exists():
            user.email = email
            changed.append("email")
    if name and user.first_name != name[:150] and not user.last_name:
        user.first_name = name[:150]
        changed.append("first_name")
    if changed:
        user.save(update_fields=changed)


def _sync_operator(identity: SsoIdentity, *, granted: bool, actor: Actor) -> None:
    """Grant or take back the operator role as the claim says; each change is in the gateway-wide
    audit log (`operator.grant` / `operator.revoke`)."""
    user = identity.user
    if user.is_superuser:
        return  # always an operator; nothing for single sign-on to grant or take
    group, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
    in_group = user.groups.filter(pk=group.pk).exists()
    if granted and not (in_group and user.is_staff):
        user.groups.add(group)
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        identity.operator_from_sso = True
        _audit_operator(user, "operator.grant", actor=actor, operator=True)
        logger.warning("sso: user#%s made an operator by the operator claim", user.pk)
    elif not granted and identity.operator_from_sso:
        user.groups.remove(group)
        user.is_staff = False
        user.save(update_fields=["is_staff"])
        identity.operator_from_sso = False
        _audit_operator(user, "operator.revoke", actor=actor, operator=False)
        logger.warning("sso: user#%s is no longer an operator (the operator claim says so)", user.pk)
    user.__dict__.pop("_tollhouse_is_operator", None)


def _audit_operator(user: Any, action: str, *, actor: Actor, operator: bool) -> None:
    label = user.email or user.get_username()
    audit_record(
        tenant=None,
        actor=actor,
        action=action,
        target=user,
        before={"user": label, "operator": not operator},
        after={"user": label, "operator": operator},
    )


def _sync_memberships(user: Any, claim: Any, *, actor: Actor) -> None:
    wanted, skipped = tenant_grants(claim)
    for problem in skipped:
        logger.info("sso: user#%s tenants claim: skipped %s", user.pk, problem)
    tenants = {tenant.slug: tenant for tenant in Tenant.objects.filter(slug__in=list(wanted))}
    for slug in sorted(set(wanted) - set(tenants)):
        logger.warning(
            "sso: user#%s tenants claim names tenant %r, which does not exist: skipped", user.pk, slug[:100]
        )
    current = {
        m.tenant.slug: m for m in Membership.objects.filter(user=user).select_related("tenant", "user")
    }
    for slug, tenant in tenants.items():
        role = wanted[slug]
        membership = current.get(slug)
        if membership is None:
            membership_save(
                membership=Membership(tenant=tenant, user=user, role=role, source=Membership.Source.SSO),
                actor=actor,
            )
        elif membership.source == Membership.Source.SSO and membership.role != role:
            _try(member_role_change, membership=membership, role=role, actor=actor)
    for slug, membership in current.items():
        if membership.source == Membership.Source.SSO and slug not in tenants:
            _try(member_remove, membership=membership, actor=actor)


def _try(service: Any, **kwargs: Any) -> None:
    """A member change the tenant's rules refuse (its last owner) is logged and skipped: the
    sign-in goes on with the membership as it was."""
    membership = kwargs["membership"]
    try:
        service(**kwargs)
    except (ValidationError, PermissionDenied) as exc:
        logger.warning(
            "sso: user#%s in tenant %s: %s skipped: %s",
            membership.user_id,
            membership.tenant.slug,
            service.__name__,
            " ".join(getattr(exc, "messages", [str(exc)])),
        )
