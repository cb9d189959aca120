"""What the base layout needs on every page: the tenant being looked at, the nav its role may see,
the user's other tenants (the switcher), and `can.<action>` flags (dots as underscores)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from accounts.permissions import PERMISSIONS, allowed, is_operator
from accounts.selectors import is_operator_view, memberships_for_user

# (label, URL name, action): the console's sections in nav order. A section whose URL is not
# registered (yet) or whose action the role lacks is left out of the nav.
NAV: tuple[tuple[str, str, str], ...] = (
    ("Overview", "billing:overview", "overview.view"),
    ("Usage", "billing:usage", "usage.view"),
    ("Keys", "accounts:keys", "keys.view"),
    ("Budgets", "billing:budgets", "budgets.view"),
    ("Credits", "billing:credits", "credits.view"),
    ("Members", "accounts:members", "members.view"),
    ("Signing keys", "accounts:signing_keys", "signing_keys.view"),
    ("Audit", "accounts:audit", "audit.view"),
)


# (label, URL name): the operator console's sections (/ops/), in nav order; each app registers its
# operator pages in its own `ops_urls.py` under the namespace `<app>_ops`. A section whose URL is
# not registered (yet) is left out.
OPS_NAV: tuple[tuple[str, str], ...] = (
    ("Overview", "billing_ops:overview"),
    ("Tenants", "accounts_ops:tenants"),
    ("Plans", "accounts_ops:plans"),
    ("Providers", "gateway_ops:providers"),
    ("Routes", "gateway_ops:routes"),
    ("Prices", "billing_ops:prices"),
    ("Redemption codes", "billing_ops:codes"),
    ("Audit log", "accounts_ops:audit"),
)


def ops_home_url() -> str | None:
    """The operator console's first page, or None while no operator page is registered."""
    for _label, name in OPS_NAV:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return None


def tenant_home_url(slug: str) -> str:
    """Where a tenant's console starts: its overview (or its keys page, while there is no overview)."""
    for name in ("billing:overview", "accounts:keys"):
        try:
            return reverse(name, kwargs={"slug": slug})
        except NoReverseMatch:
            continue
    return f"/t/{slug}/"


def console(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    membership = getattr(request, "membership", None)
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"console": {"tenant": None}}
    operator = is_operator(user)
    memberships = list(memberships_for_user(user)[:50])
    context: dict[str, Any] = {
        "tenant": tenant,
        "membership": membership,
        "memberships": memberships,
        "others": [m for m in memberships if tenant is None or m.tenant_id != tenant.pk],
        "nav": [],
        "can": {},
        "operator": operator,
        "ops": bool(getattr(request, "ops", False)),
        "ops_url": ops_home_url() if operator else None,
        # An operator looking at a tenant they are not a member of (accounts.selectors.tenant_for_user).
        "operator_view": tenant is not None and is_operator_view(membership),
    }
    if context["ops"]:
        current = request.resolver_match.view_name if request.resolver_match else ""
        for label, name in OPS_NAV:
            try:
                url = reverse(name)
            except NoReverseMatch:
                continue
            # A section's own pages count as it: "gateway_ops:route_edit" is in "gateway_ops:routes".
            active = current == name or current.startswith(name.removesuffix("s") + "_")
            context["nav"].append({"label": label, "url": url, "active": active})
    if tenant is not None and membership is not None:
        current = request.resolver_match.view_name if request.resolver_match else ""
        for label, name, action in NAV:
            if not allowed(membership.role, action):
                continue
            try:
                url = reverse(name, kwargs={"slug": tenant.slug})
            except NoReverseMatch:
                continue
            context["nav"].append({"label": label, "url": url, "active": current.startswith(name)})
        context["can"] = {
            action.replace(".", "_"): allowed(membership.role, action) for action in PERMISSIONS
        }
    for m in memberships:
        m.home_url = tenant_home_url(m.tenant.slug)  # type: ignore[attr-defined]
    return {"console": context}
