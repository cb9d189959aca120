"""Members of a tenant and invitations to join one: invite by email, revoke, accept; change a
member's role; remove a member. The console, the admin and the commands all come through here.

The rules, whoever calls:
- Owners and admins manage members; only an owner makes someone an owner, or changes or removes an
  owner. Operators (accounts.permissions.is_operator) and management commands (no acting user) may
  do everything.
- A tenant keeps at least one owner. Role changes and removals lock the tenant's row first, so two
  owners demoting each other at the same moment leave one owner, not none.
- An invitation's link carries a random token that exists only in the email; the row keeps its
  SHA-256 digest. Accepting claims the row with one conditional UPDATE (still open, not expired), in
  the transaction that creates the account and the membership: two clicks at once make one
  membership, and an accept that fails half-way leaves the invitation open.
"""

from __future__ import annotations

import hashlib
import secrets
import smtplib
import zoneinfo
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.emails import email_send
from accounts.models import Invitation, Membership, Plan, Tenant
from accounts.permissions import is_operator
from accounts.services import membership_save, tenant_create

Role = Membership.Role
MANAGER_ROLES = frozenset({Role.OWNER, Role.ADMIN})
TOKEN_BYTES = 32
MAX_TOKEN_CHARS = 100
MAX_NAME_CHARS = 150  # auth.User.first_name
_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# --- input ----------------------------------------------------------------------------------------


def normalize_email(value: str) -> str:
    """The address as stored and compared: trimmed and lower-cased, or ValidationError naming `email`."""
    email = value.strip().lower()
    if not email:
        raise ValidationError({"email": "Enter an email address."})
    if len(email) > 254 or not email.isprintable():
        raise ValidationError({"email": "Enter a valid email address."})
    try:
        EmailValidator(message="Enter a valid email address.")(email)
    except ValidationError as exc:
        raise ValidationError({"email": exc.messages}) from None
    return email


def normalize_name(value: str) -> str:
    """A person's name as stored (may be empty), or ValidationError naming `name`."""
    name = " ".join(value.split())
    if len(name) > MAX_NAME_CHARS:
        raise ValidationError({"name": f"A name is at most {MAX_NAME_CHARS} characters."})
    if not name.isprintable():
        raise ValidationError({"name": "A name must be printable text."})
    return name


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def accept_url(token: str) -> str:
    """The link in the email (the public accept page, accounts/urls.py)."""
    return settings.TOLLHOUSE_PUBLIC_URL + reverse("accounts:invitation_accept", kwargs={"token": token})


# --- who may -----------------------------------------------------------------------------------------


def _user_of(actor: Actor | None) -> Any:
    return None if actor is None else actor.user


def _label(user: Any) -> str:
    return str(user.email or user.get_username())


def member_snapshot(membership: Membership) -> dict[str, Any]:
    """What the audit log keeps of a membership: whose (their address, which outlives the account) and
    which role."""
    return {"user": _label(membership.user), "role": membership.role}


def actor_role(tenant: Tenant, user: Any) -> str | None:
    """The acting user's role in `tenant` for these rules: None (a command) and an operator count as
    an owner; someone who is not a member has no role."""
    if user is None or is_operator(user):
        return Role.OWNER
    role: str | None = (
        Membership.objects.filter(tenant=tenant, user=user).values_list("role", flat=True).first()
    )
    return role


def _require_manager(tenant: Tenant, user: Any) -> str:
    role = actor_role(tenant, user)
    if role not in MANAGER_ROLES:
        raise PermissionDenied("Only an owner or an admin of the tenant manages its members.")
    assert role is not None
    return role


ROLE_CHOICE_ERROR = "Choose owner, admin, member or viewer."


def _valid_role(role: str) -> str:
    if role not in Role.values:
        raise ValidationError({"role": ROLE_CHOICE_ERROR})
    return role


def _lock_tenant(tenant: Tenant) -> None:
    """Serialise member changes of one tenant (see the module's docstring)."""
    Tenant.objects.select_for_update().filter(pk=tenant.pk).values_list("pk", flat=True).get()


# --- a new tenant and its first owner (the operator's tenants page) -----------------------------


@transaction.atomic
def tenant_create_with_owner(
    *,
    name: str,
    slug: str,
    plan: Plan | None,
    timezone_name: str,
    prepaid: bool,
    owner_email: str,
    actor: Actor | None = None,
) -> tuple[Tenant, Membership | Invitation]:
    """Create a tenant and give it its first owner: an existing account with that address becomes
    owner at once; anyone else is invited as owner by email. All or nothing: a bad field, a slug
    taken or an invitation email that cannot be sent leaves no tenant behind."""
    errors: dict[str, list[str]] = {}
    address = ""
    try:
        address = normalize_email(owner_email)
    except ValidationError as exc:
        errors["owner_email"] = exc.message_dict["email"]
    try:
        tenant = tenant_create(
            name=name, slug=slug, plan=plan, timezone_name=timezone_name, prepaid=prepaid, actor=actor
        )
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    if errors:
        raise ValidationError(errors)
    user = get_user_model().objects.filter(email__iexact=address, is_active=True).order_by("pk").first()
    if user is not None:
        return tenant, membership_save(
            membership=Membership(tenant=tenant, user=user, role=Role.OWNER), actor=actor
        )
    try:
        return tenant, invitation_create(tenant=tenant, email=address, role=Role.OWNER, actor=actor)
    except ValidationError as exc:
        raise ValidationError({"owner_email": exc.message_dict.get("email", exc.messages)}) from None


# --- invitations --------------------------------------------------------------------------------


@transaction.atomic
def invitation_create(*, tenant: Tenant, email: str, role: str, actor: Actor | None = None) -> Invitation:
    """Invite `email` to `tenant` with `role`, and email the link. An expired invitation to the same
    address is closed first; an open one is refused (revoke it to send a new one). If the email
    cannot be sent, nothing is saved."""
    errors: dict[str, list[str]] = {}
    address = ""
    try:
        address = normalize_email(email)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if role not in Role.values:
        errors["role"] = [ROLE_CHOICE_ERROR]
    if errors:
        raise ValidationError(errors)
    actor_user = _user_of(actor)
    acting = _require_manager(tenant, actor_user)
    if role == Role.OWNER and acting != Role.OWNER:
        raise ValidationError({"role": "Only an owner can invite an owner."})
    _lock_tenant(tenant)
    if Membership.objects.filter(tenant=tenant, user__email__iexact=address).exists():
        raise ValidationError({"email": f"{address} is already a member of {tenant.name}."})
    now = timezone.now()
    open_ = Invitation.objects.filter(
        tenant=tenant, email=address, accepted_at__isnull=True, revoked_at__isnull=True
    ).first()
    if open_ is not None:
        if open_.expires_at > now:
            raise ValidationError(
                {"email": f"{address} already has an open invitation: revoke it to send a new one."}
            )
        Invitation.objects.filter(pk=open_.pk).update(revoked_at=now)
        audit_record(
            tenant=tenant,
            actor=actor,
            action="invitation.revoke",
            target=open_,
            before={"state": "expired"},
            after={"state": "revoked", "reason": "replaced by a new invitation"},
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    invitation = Invitation(
        tenant=tenant, email=address, role=role, token_digest=token_digest(token), invited_by=actor_user
    )
    invitation.full_clean()
    invitation.save()
    audit_record(
        tenant=tenant,
        actor=actor,
        action="invitation.create",
        target=invitation,
        before=None,
        after={"email": address, "role": role, "expires_at": invitation.expires_at},
    )
    try:
        _send_invitation(invitation, token, actor_user)
    except (smtplib.SMTPException, OSError):
        # Raised inside the transaction: the invitation is not kept, so it can simply be sent again.
        raise ValidationError(
            {"email": "The invitation email could not be sent; nothing was saved. Try again in a moment."}
        ) from None
    return invitation


def _send_invitation(invitation: Invitation, token: str, actor_user: Any) -> None:
    tenant = invitation.tenant
    inviter = (
        (actor_user.get_full_name() or actor_user.email or actor_user.get_username())
        if actor_user is not None
        else "The Tollhouse operator"
    )
    expires = timezone.localtime(invitation.expires_at, timezone=_zone(tenant))
    email_send(
        "invitation",
        {
            "tenant": tenant.name,
            "inviter": inviter,
            "role": invitation.role,
            "role_article": "an" if invitation.role in (Role.OWNER, Role.ADMIN) else "a",
            "accept_url": accept_url(token),
            "expires": f"{expires:%Y-%m-%d %H:%M} ({tenant.timezone})",
        },
        to=invitation.email,
    )


def _zone(tenant: Tenant) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(tenant.timezone)


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Actor | None = None) -> Invitation:
    """Close an open invitation: its link stops working at once."""
    _require_manager(invitation.tenant, _user_of(actor))
    changed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    invitation.refresh_from_db()
    if changed != 1:
        raise ValidationError(f"This invitation is already {invitation.state}.")
    audit_record(
        tenant=invitation.tenant,
        actor=actor,
        action="invitation.revoke",
        target=invitation,
        before={"state": "pending"},
        after={"state": "revoked"},
    )
    return invitation


def invitation_for_token(token: str) -> Invitation | None:
    """The invitation a link's token opens (in any state), or None for a token that opens none."""
    if not token or len(token) > MAX_TOKEN_CHARS or not set(token) <= _TOKEN_ALPHABET:
        return None
    return Invitation.objects.select_related("tenant").filter(token_digest=token_digest(token)).first()


def invitation_unusable_reason(invitation: Invitation | None) -> ValidationError | None:
    """Why this invitation cannot be accepted (one sentence, with a code), or None if it can."""
    if invitation is None:
        return ValidationError(
            "This invitation link is not valid: check that it was copied whole.", code="invalid"
        )
    state = invitation.state
    if state == "accepted":
        return ValidationError("This invitation has already been used.", code="used")
    if state == "revoked":
        return ValidationError("This invitation was withdrawn. Ask for a new one.", code="revoked")
    if state == "expired":
        return ValidationError("This invitation has expired. Ask for a new one.", code="expired")
    return None


@transaction.atomic
def invitation_accept(*, token: str, user: Any = None, password: str = "", name: str = "") -> Membership:
    """Accept an invitation: as `user` (signed in, with the invited address), or by creating an account
    for the invited address with `password` (and `name`). Returns the new membership."""
    User = get_user_model()
    invitation = invitation_for_token(token)
    reason = invitation_unusable_reason(invitation)
    if reason is not None:
        raise reason
    assert invitation is not None
    tenant = invitation.tenant
    if user is not None:
        if (user.email or "").strip().lower() != invitation.email:
            raise ValidationError(
                f"This invitation is for {invitation.email}, and you are signed in as "
                f"{user.email or user.get_username()}. Sign out, then open the link again.",
                code="wrong_account",
            )
    else:
        if User._default_manager.filter(email__iexact=invitation.email).exists():
            raise ValidationError(
                f"An account with {invitation.email} already exists: sign in, then open the link again.",
                code="sign_in",
            )
        errors: dict[str, list[str]] = {}
        try:
            name = normalize_name(name)
        except ValidationError as exc:
            errors.update(exc.message_dict)
        candidate = User(username=invitation.email[:150], email=invitation.email, first_name=name[:150])
        if not password:
            errors["password"] = ["Choose a password."]
        else:
            try:
                validate_password(password, candidate)
            except ValidationError as exc:
                errors["password"] = exc.messages
        if errors:
            raise ValidationError(errors)

    # The claim: exactly one accept can change this row. A second one waits for the first's
    # transaction and then finds it accepted.
    now = timezone.now()
    claimed = Invitation.objects.filter(
        pk=invitation.pk, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
    ).update(accepted_at=now)
    if claimed != 1:
        invitation.refresh_from_db()
        raise invitation_unusable_reason(invitation) or ValidationError(
            "This invitation has already been used.", code="used"
        )

    if user is None:
        user = _create_user(email=invitation.email, password=password, name=name)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError(f"You are already a member of {tenant.name}.", code="member")
    membership = Membership(tenant=tenant, user=user, role=invitation.role)
    membership.full_clean()
    membership.save()
    Invitation.objects.filter(pk=invitation.pk).update(accepted_by=user)
    # The invitee is the one acting; the invitation and the membership are both recorded.
    actor = Actor.console(user)
    audit_record(
        tenant=tenant,
        actor=actor,
        action="invitation.accept",
        target=invitation,
        before={"state": "pending"},
        after={"state": "accepted", "user": _label(user)},
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="member.add",
        target=membership,
        before=None,
        after=member_snapshot(membership),
    )
    return membership


def _create_user(*, email: str, password: str, name: str) -> Any:
    User = get_user_model()
    username = email if len(email) <= 150 else f"user-{secrets.token_hex(6)}"
    if User._default_manager.filter(username=username).exists():
        username = f"{email[:130]}-{secrets.token_hex(4)}"
    try:
        with transaction.atomic():
            return User._default_manager.create_user(
                username=username, email=email, password=password, first_name=name
            )
    except IntegrityError:  # the same address accepted elsewhere at the same moment
        raise ValidationError(
            f"An account with {email} already exists: sign in, then open the link again.", code="sign_in"
        ) from None


# --- members ---------------------------------------------------------------------------------------


def _owners(tenant: Tenant) -> int:
    return Membership.objects.filter(tenant=tenant, role=Role.OWNER).count()


@transaction.atomic
def member_role_change(*, membership: Membership, role: str, actor: Actor | None = None) -> Membership:
    """Give a member another role. Only an owner grants or takes away the owner role; the last owner
    stays an owner."""
    _valid_role(role)
    tenant = membership.tenant
    _lock_tenant(tenant)
    acting = _require_manager(tenant, _user_of(actor))
    current = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=membership.pk)
        .first()
    )
    if current is None:
        raise ValidationError("This person is no longer a member.")
    if acting != Role.OWNER and Role.OWNER in (current.role, role):
        raise ValidationError({"role": "Only an owner can make someone an owner or change an owner's role."})
    if current.role == role:
        return current
    if current.role == Role.OWNER and _owners(tenant) == 1:
        raise ValidationError(
            {"role": f"{tenant.name} needs at least one owner: make someone else an owner first."}
        )
    before = member_snapshot(current)
    current.role = role
    current.full_clean()
    current.save(update_fields=["role"])
    audit_record(
        tenant=tenant,
        actor=actor,
        action="member.role",
        target=current,
        before=before,
        after=member_snapshot(current),
    )
    membership.role = role
    return current


@transaction.atomic
def member_remove(*, membership: Membership, actor: Actor | None = None) -> None:
    """Remove someone from a tenant (their account stays). Only an owner removes an owner; the last
    owner stays."""
    tenant = membership.tenant
    _lock_tenant(tenant)
    acting = _require_manager(tenant, _user_of(actor))
    current = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=membership.pk)
        .first()
    )
    if current is None:
        return  # already gone: the outcome asked for
    if current.role == Role.OWNER:
        if acting != Role.OWNER:
            raise ValidationError("Only an owner can remove an owner.")
        if _owners(tenant) == 1:
            raise ValidationError(
                f"{tenant.name} needs at least one owner: make someone else an owner first."
            )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="member.remove",
        target=current,
        before=member_snapshot(current),
        after=None,
    )
    current.delete()
