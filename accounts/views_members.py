"""The members page, /t/<slug>/members/: members and their roles, open invitations; invite, revoke,
change a role, remove (accounts/members.py). Every view goes through `tenant_page`, every member and
invitation through its own access helper (another tenant's id is a 404). A refused change shows the
page again with the error next to what was refused (400), having written nothing."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts import members as services
from accounts.access import can, tenant_page
from accounts.audit import Actor
from accounts.forms_members import ROLE_HELP, InviteForm, RoleForm, add_service_errors, role_choices
from accounts.members import Role
from accounts.models import Membership, Tenant
from accounts.selectors import invitation_for_tenant, invitations_open, member_for_tenant, members_of_tenant


def _page(
    request: HttpRequest,
    tenant: Tenant,
    membership: Membership,
    *,
    invite_form: InviteForm | None = None,
    row_errors: dict[int, list[str]] | None = None,
    page_errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    may_change_roles = can(membership, "members.role")
    may_remove = can(membership, "members.remove")
    rows = [
        {
            "membership": member,
            "errors": (row_errors or {}).get(member.pk, []),
            # Only an owner changes an owner's role (accounts/members.py): an admin sees it as text.
            "editable": may_change_roles and (membership.role == Role.OWNER or member.role != Role.OWNER),
            "removable": may_remove and (membership.role == Role.OWNER or member.role != Role.OWNER),
        }
        for member in members_of_tenant(tenant)
    ]
    invitations = [{"invitation": invitation} for invitation in invitations_open(tenant)]
    context: dict[str, Any] = {
        "rows": rows,
        "page_errors": page_errors or [],
        "invitations": invitations,
        "invite_form": invite_form or InviteForm(actor_role=membership.role),
        "role_choices": role_choices(membership.role),
        "may_invite": can(membership, "members.invite"),
        "may_change_roles": may_change_roles,
        "role_help": list(ROLE_HELP.items()),
        "invitation_days": settings.TOLLHOUSE_INVITATION_DAYS,
        "may_remove": may_remove,
    }
    return render(request, "accounts/members.html", context, status=status)


def _back(tenant: Tenant) -> HttpResponse:
    return redirect("accounts:members", slug=tenant.slug)


@require_GET
@tenant_page("members.view")
def members(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    return _page(request, tenant, membership)


@require_POST
@tenant_page("members.invite")
def member_invite(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    form = InviteForm(request.POST, actor_role=membership.role)
    if form.is_valid():
        try:
            invitation = services.invitation_create(
                tenant=tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=Actor.console(request.user),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return _back(tenant)
    return _page(request, tenant, membership, invite_form=form, status=400)


@require_POST
@tenant_page("members.invite")
def invitation_revoke(
    request: HttpRequest, *, tenant: Tenant, membership: Membership, invitation_id: str
) -> HttpResponse:
    invitation = invitation_for_tenant(tenant, invitation_id)
    try:
        services.invitation_revoke(invitation=invitation, actor=Actor.console(request.user))
    except ValidationError as exc:
        # (A closed invitation is not listed any more: its error goes on top of the page.)
        return _page(request, tenant, membership, page_errors=exc.messages, status=400)
    messages.success(request, f"The invitation to {invitation.email} was revoked: its link no longer works.")
    return _back(tenant)


@require_POST
@tenant_page("members.role")
def member_role(
    request: HttpRequest, *, tenant: Tenant, membership: Membership, member_id: str
) -> HttpResponse:
    target = member_for_tenant(tenant, member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        return _page(
            request,
            tenant,
            membership,
            row_errors={target.pk: [str(error) for error in form.errors["role"]]},
            status=400,
        )
    before = target.role
    try:
        changed = services.member_role_change(
            membership=target, role=form.cleaned_data["role"], actor=Actor.console(request.user)
        )
    except ValidationError as exc:
        return _page(request, tenant, membership, row_errors={target.pk: exc.messages}, status=400)
    if changed.role != before:
        messages.success(request, f"{_who(target)} is now {changed.role}.")
    return _back(tenant)


@require_POST
@tenant_page("members.remove")
def member_remove(
    request: HttpRequest, *, tenant: Tenant, membership: Membership, member_id: str
) -> HttpResponse:
    target = member_for_tenant(tenant, member_id)
    try:
        services.member_remove(membership=target, actor=Actor.console(request.user))
    except ValidationError as exc:
        return _page(request, tenant, membership, row_errors={target.pk: exc.messages}, status=400)
    if target.user_id == request.user.pk:
        messages.success(request, f"You left {tenant.name}.")
        return redirect("accounts:home")
    messages.success(request, f"{_who(target)} was removed from {tenant.name}.")
    return _back(tenant)


def _who(member: Membership) -> str:
    user = member.user
    return str(user.email or user.get_username())
