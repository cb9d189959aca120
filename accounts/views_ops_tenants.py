"""The operator's tenants pages, /ops/tenants/: list (search, status, plan, this month's spend, keyset
pages), create (with a first owner), detail and edit (plan, overrides, settings), suspend / resume,
top up credits, and the link to the tenant's console, read-only (accounts.access.tenant_page).

Every view goes through `operator_page` (404 for anyone else); every change through a service,
which writes the audit log in the change's transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.access import operator_page
from accounts.audit import Actor
from accounts.context import tenant_home_url
from accounts.forms_ops import TenantCreateForm, TenantEditForm, TenantSearchForm, TopupForm
from accounts.members import tenant_create_with_owner
from accounts.models import Invitation, Tenant
from accounts.selectors import tenant_for_operator, tenant_owners, tenants_page
from accounts.services import looser_keys_sentence, tenant_save, tenant_status_set

# An operator's page may use every app, as a management command does.
from billing.credits import credit_balance, credit_topup, usd_text
from billing.selectors import tenants_this_month


@operator_page
@require_GET
def tenants(request: HttpRequest) -> HttpResponse:
    form = TenantSearchForm(request.GET)
    rows: list[dict[str, Any]] = []
    next_cursor = ""
    if form.is_valid():
        data = form.cleaned_data
        try:
            page = tenants_page(
                search=data["q"], status=data["status"], plan=data["plan"], cursor=data["cursor"]
            )
        except Http404:
            form.add_error("cursor", "Bad page cursor.")
        else:
            month = tenants_this_month(page.tenants)
            rows = [{"tenant": tenant, "month": month.get(tenant.pk)} for tenant in page.tenants]
            next_cursor = page.next_cursor
    filtered = {key: value for key, value in request.GET.items() if key != "cursor" and value}
    context = {
        "form": form,
        "rows": rows,
        "next_cursor": next_cursor,
        "first_page": not request.GET.get("cursor"),
        "filters": filtered,
        "filtered": bool(filtered),
    }
    return render(request, "accounts/ops/tenants.html", context, status=400 if form.errors else 200)


@operator_page
@require_http_methods(["GET", "POST"])
def tenant_new(request: HttpRequest) -> HttpResponse:
    form = TenantCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            tenant, owner = tenant_create_with_owner(
                name=data["name"],
                slug=data["slug"],
                plan=data["plan"],
                timezone_name=data["timezone"],
                prepaid=data["prepaid"],
                owner_email=data["owner_email"],
                actor=Actor.console(request.user),
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            if isinstance(owner, Invitation):
                told = f"{owner.email} was invited as its owner (the invitation email is on its way)."
            else:
                told = f"{owner.user.email or owner.user.get_username()} is its owner."
            messages.success(request, f"Created the tenant {tenant.name} ({tenant.slug}): {told}")
            return redirect("accounts_ops:tenant", slug=tenant.slug)
    status = 400 if form.errors else 200
    return render(request, "accounts/ops/tenant_new.html", {"form": form}, status=status)


def _detail(
    request: HttpRequest,
    tenant: Tenant,
    *,
    edit_form: TenantEditForm | None = None,
    topup_form: TopupForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "tenant": tenant,
        "edit_form": edit_form or TenantEditForm(initial=TenantEditForm.initial_for(tenant)),
        "topup_form": topup_form or TopupForm(),
        "owners": tenant_owners(tenant),
        "month": tenants_this_month([tenant]).get(tenant.pk),
        "balance": credit_balance(tenant),
        "limits": tenant.effective_limits(),
        "console_url": tenant_home_url(tenant.slug),
    }
    return render(request, "accounts/ops/tenant_detail.html", context, status=status)


@operator_page
@require_http_methods(["GET", "POST"])
def tenant_detail(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = tenant_for_operator(slug)
    if request.method != "POST":
        return _detail(request, tenant)
    form = TenantEditForm(request.POST)
    if form.is_valid():
        for name in TenantEditForm.FIELDS:
            setattr(tenant, name, form.cleaned_data[name])
        try:
            tenant_save(tenant=tenant, actor=Actor.console(request.user))
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Saved {tenant.name}: the gateway applies it within seconds.")
            sentence = looser_keys_sentence(tenant=tenant)
            if sentence:
                messages.warning(request, sentence)
            return redirect("accounts_ops:tenant", slug=tenant.slug)
    # Shown as stored, next to the form with what was typed and why it was refused.
    return _detail(request, tenant_for_operator(slug), edit_form=form, status=400)


@operator_page
@require_POST
def tenant_status(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = tenant_for_operator(slug)
    wanted = request.POST.get("status", "")
    if wanted not in Tenant.Status.values:
        return HttpResponse("Choose active or suspended.", status=400, content_type="text/plain")
    if wanted == tenant.status:
        messages.info(request, f"{tenant.name} is already {wanted}.")
    else:
        tenant_status_set(tenant=tenant, status=wanted, actor=Actor.console(request.user))
        if wanted == Tenant.Status.SUSPENDED:
            messages.warning(
                request,
                f"Suspended {tenant.name}: every gateway now refuses its calls (403 tenant_suspended).",
            )
        else:
            messages.success(request, f"Resumed {tenant.name}: its calls are accepted again.")
    return redirect("accounts_ops:tenant", slug=tenant.slug)


@operator_page
@require_POST
def tenant_topup(request: HttpRequest, slug: str) -> HttpResponse:
    tenant = tenant_for_operator(slug)
    form = TopupForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            with transaction.atomic():
                credit_topup(
                    tenant=tenant,
                    usd=data["amount"],
                    note=data["note"],
                    actor=Actor.console(request.user),
                    start_prepaid=data["start_prepaid"],
                )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            balance = credit_balance(tenant)
            messages.success(
                request,
                f"Added {usd_text(data['amount'])} USD to {tenant.name}'s credits; balance {usd_text(balance)} USD.",
            )
            return redirect("accounts_ops:tenant", slug=tenant.slug)
    return _detail(request, tenant_for_operator(slug), topup_form=form, status=400)
