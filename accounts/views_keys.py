"""The keys page, /t/<slug>/keys/: list, issue, rotate, revoke.

Every view goes through `tenant_page` (accounts/access.py), every key through `api_key_for_user`.
Writes go through the services (issue: `billing.budgets.api_key_issue_with_budget`, the one the
`key_issue` command calls; rotate and revoke: accounts.services). A new secret is rendered straight
into the response to the POST that made it, with no-store caching: never put in a session, a
cookie, a message or a redirect, and never shown again.

The page reads per-key spend from billing (a page may use every app, as a management command does;
the apps' own modules still depend one way).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.access import tenant_page
from accounts.audit import Actor
from accounts.forms import KeyIssueForm, KeyRotateForm
from accounts.models import ApiKey, Membership, Tenant
from accounts.selectors import api_key_for_user, api_keys_for_tenant
from accounts.services import api_key_revoke, api_key_rotate
from billing.budgets import api_key_issue_with_budget
from billing.selectors import key_usage_this_period

MAX_LISTED = 500


@tenant_page("keys.view")
def keys(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    listed = list(api_keys_for_tenant(tenant)[: MAX_LISTED + 1])
    usage = key_usage_this_period(tenant=tenant, api_keys=listed[:MAX_LISTED])
    rows = [{"key": key, "usage": usage.get(key.pk)} for key in listed[:MAX_LISTED]]
    return render(
        request,
        "accounts/keys.html",
        {
            "rows": rows,
            "more": len(listed) > MAX_LISTED,
            "active_count": sum(1 for key in listed if key.status == ApiKey.Status.ACTIVE),
            "limits": tenant.effective_limits(),
        },
    )


@tenant_page("keys.issue")
@require_http_methods(["GET", "POST"])
def key_issue(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    form = KeyIssueForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            issued = api_key_issue_with_budget(
                tenant=tenant,
                name=data["name"],
                actor=Actor.console(request.user),
                expires_at=data["expires_at"],
                allowed_models=data["allowed_models"],
                allowed_ips=data["allowed_ips"],
                rpm_limit=data["rpm_limit"],
                tpm_limit=data["tpm_limit"],
                concurrency_limit=data["concurrency_limit"],
                cache=data["cache"],
                cache_ttl=data["cache_ttl"],
                budget_usd=data["budget"],
                budget_period=data["budget_period"],
                budget_hard=data["budget_hard"],
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            return _secret_page(request, api_key=issued.api_key, raw=issued.raw, rotated=False)
    status = 400 if form.errors else 200
    context = {"form": form, "limits": tenant.effective_limits()}
    return render(request, "accounts/key_issue.html", context, status=status)


@tenant_page("keys.view")
def key_detail(request: HttpRequest, *, tenant: Tenant, membership: Membership, key_id: int) -> HttpResponse:
    api_key = api_key_for_user(request.user, tenant, key_id)
    return _detail(request, tenant=tenant, api_key=api_key, rotate_form=KeyRotateForm())


def _detail(
    request: HttpRequest, *, tenant: Tenant, api_key: ApiKey, rotate_form: KeyRotateForm, status: int = 200
) -> HttpResponse:
    usage = key_usage_this_period(tenant=tenant, api_keys=[api_key]).get(api_key.pk)
    context: dict[str, Any] = {
        "api_key": api_key,
        "usage": usage,
        "budgets": list(api_key.budgets.order_by("period")),
        "rotate_form": rotate_form,
        "limits": tenant.effective_limits(),
    }
    return render(request, "accounts/key_detail.html", context, status=status)


@tenant_page("keys.rotate")
@require_POST
def key_rotate(request: HttpRequest, *, tenant: Tenant, membership: Membership, key_id: int) -> HttpResponse:
    api_key = api_key_for_user(request.user, tenant, key_id)
    form = KeyRotateForm(request.POST)
    if form.is_valid():
        try:
            issued = api_key_rotate(
                api_key=api_key, grace=form.grace_period(), actor=Actor.console(request.user)
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            return _secret_page(request, api_key=issued.api_key, raw=issued.raw, rotated=True)
    return _detail(request, tenant=tenant, api_key=api_key, rotate_form=form, status=400)


@tenant_page("keys.revoke")
@require_POST
def key_revoke(request: HttpRequest, *, tenant: Tenant, membership: Membership, key_id: int) -> HttpResponse:
    api_key = api_key_for_user(request.user, tenant, key_id)
    if api_key.status == ApiKey.Status.REVOKED:
        messages.info(request, f"The key “{api_key.name}” was already revoked.")
    else:
        api_key_revoke(api_key=api_key, actor=Actor.console(request.user))
        messages.success(
            request,
            f"Revoked the key “{api_key.name}” (th-{api_key.prefix}…): it stops working within seconds.",
        )
    return redirect("accounts:keys", slug=tenant.slug)


def _secret_page(request: HttpRequest, *, api_key: ApiKey, raw: str, rotated: bool) -> HttpResponse:
    """The one time a secret is shown: straight into this response (no-store, see tenant_page)."""
    context = {
        "api_key": api_key,
        "raw_key": raw,
        "rotated": rotated,
        "base_url": request.build_absolute_uri("/v1"),
    }
    return render(request, "accounts/key_secret.html", context)
