"""The keys page, /t/<slug>/keys/: list, issue, rotate, revoke (accounts.services; per-key spend
from billing.selectors). Every view goes through `tenant_page`, every key through `api_key_for_user`."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.access import tenant_page
from accounts.models import Membership, Tenant
from accounts.selectors import api_keys_for_tenant


@tenant_page("keys.view")
def keys(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    return render(request, "accounts/keys.html", {"keys": api_keys_for_tenant(tenant)})
