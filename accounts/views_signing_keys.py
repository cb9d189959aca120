"""The signing-keys page, /t/<slug>/signing-keys/: the keys the tenant's own backend signs end-user
tokens with (accounts/signing.py). Add one (an HS256 secret Tollhouse generates is shown once, on the
response to the add form, never stored in a session or a cookie) or deactivate one."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET, require_POST

from accounts import signing
from accounts.access import can, tenant_page
from accounts.audit import Actor
from accounts.forms_members import SigningKeyForm, add_service_errors
from accounts.models import Membership, Tenant
from accounts.selectors import signing_key_for_tenant, signing_keys_of_tenant


def _page(
    request: HttpRequest,
    tenant: Tenant,
    membership: Membership,
    *,
    form: SigningKeyForm | None = None,
    issued: signing.IssuedSigningKey | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "signing_keys": signing_keys_of_tenant(tenant),
        "form": form or SigningKeyForm(),
        "may_edit": can(membership, "signing_keys.edit"),
        "issued": issued,
    }
    return render(request, "accounts/signing_keys.html", context, status=status)


@require_GET
@tenant_page("signing_keys.view")
def signing_keys(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    return _page(request, tenant, membership)


@require_POST
@tenant_page("signing_keys.edit")
def signing_key_add(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    form = SigningKeyForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            issued = signing.signing_key_issue(
                tenant=tenant,
                name=data["name"],
                issuer=data["issuer"],
                algorithm=data["algorithm"],
                secret=data["secret"],
                public_key=data["public_key"],
                key_id=data["key_id"],
                actor=Actor.console(request.user),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if not issued.secret:
                messages.success(request, f"Signing key “{issued.signing_key.name}” added.")
                return redirect("accounts:signing_keys", slug=tenant.slug)
            # The generated secret is on this response only: not in a message (a cookie), not stored.
            response = _page(request, tenant, membership, issued=issued)
            add_never_cache_headers(response)
            return response
    return _page(request, tenant, membership, form=form, status=400)


@require_POST
@tenant_page("signing_keys.edit")
def signing_key_deactivate(
    request: HttpRequest, *, tenant: Tenant, membership: Membership, signing_key_id: str
) -> HttpResponse:
    signing_key = signing_key_for_tenant(tenant, signing_key_id)
    if signing_key.active:
        signing.signing_key_deactivate(signing_key=signing_key, actor=Actor.console(request.user))
        messages.success(
            request, f"Signing key “{signing_key.name}” deactivated: tokens it signed no longer work."
        )
    return redirect("accounts:signing_keys", slug=tenant.slug)
