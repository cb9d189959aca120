"""`@tenant_page(action)`: the one way into a tenant's console page; `@operator_page`: the one way
into an operator's page under /ops/.

It resolves `/t/<slug>/...` through `accounts.selectors.tenant_for_user` and checks the action
against the permission table (accounts/permissions.py):

- anonymous: redirect to the sign-in page, coming back here after;
- signed in but not a member of the tenant (or no such tenant): 404, as for any unknown page;
- an operator who is not a member: the tenant's pages read-only, as a viewer (the permission table),
  any other method than GET/HEAD refused with 403, and every visit written to the tenant's audit log
  (`tenant.operator_view`, naming the page) before the view runs;
- a member whose role lacks the action: 403;
- otherwise the view runs, in the tenant's time zone, as `view(request, *, tenant, membership, **other_url_kwargs)`, and
  `request.tenant` / `request.membership` are set for the layout (accounts.context.console).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from accounts.permissions import PERMISSIONS, allowed, is_operator
from accounts.selectors import is_operator_view, tenant_for_user
from accounts.services import operator_view_record

View = Callable[..., HttpResponse]


def tenant_page(action: str) -> Callable[[View], View]:
    if action not in PERMISSIONS:
        raise ValueError(f"{action!r} is not in accounts.permissions.PERMISSIONS")

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, slug: str, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            tenant, membership = tenant_for_user(request.user, slug, operator_view=True)
            request.tenant = tenant  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            if is_operator_view(membership):
                operator_view_record(
                    tenant=tenant, user=request.user, path=request.path, method=request.method or ""
                )
                if request.method not in ("GET", "HEAD"):
                    raise PermissionDenied("An operator views a tenant's console read-only.")
            if not allowed(membership.role, action):
                raise PermissionDenied(f"Your role ({membership.role}) may not do this here.")
            # Times on tenant pages are shown in the tenant's time zone.
            with timezone.override(ZoneInfo(tenant.timezone)):
                return view(request, tenant=tenant, membership=membership, **kwargs)

        wrapped.console_action = action  # type: ignore[attr-defined]
        # Tenant pages show tenant data: never kept by a browser or a shared cache.
        return never_cache(wrapped)

    return decorate


def can(membership: Any, action: str) -> bool:
    """For templates and views: may this membership do `action`?"""
    return membership is not None and allowed(membership.role, action)


def operator_page(view: View) -> View:
    """An operator's page (/ops/...): superusers and staff in the operators group
    (accounts.permissions.is_operator). Everyone else, anonymous included, gets the same 404 as an
    unknown page, so the operator console's pages are not advertised. Times are shown in UTC.
    `request.ops` is set for the layout (the operator nav, accounts.context.console)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_operator(request.user):
            raise Http404("No such page.")
        request.ops = True  # type: ignore[attr-defined]
        with timezone.override(ZoneInfo("UTC")):
            return view(request, *args, **kwargs)

    wrapped.operator_page = True  # type: ignore[attr-defined]
    # Operator pages show every tenant's data: never kept by a browser or a shared cache.
    return never_cache(wrapped)
