"""The operator's audit log, /ops/audit/ (`accounts_ops:audit`): every tenant's changes and the
operator's own, newest first, filtered by tenant, actor, object (type and id) and time, keyset-
paginated (`?cursor=`). A bad filter or cursor is an inline error on a 200 page. Operators only
(accounts.access.operator_page: everyone else gets a 404). Times in UTC."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.access import operator_page
from accounts.forms_audit import AuditFilterForm
from accounts.selectors import AUDIT_OBJECT_TYPES, AuditCursorError, audit_changes, audit_page_all

FILTERS = ("tenant", "actor", "type", "object_id", "first", "last")
# Object types to suggest (the field takes any app.model): the tenant pages' and the operator's own.
OPERATOR_OBJECT_TYPES = {
    "gateway.provider": "Providers",
    "gateway.modelroute": "Routes",
    "gateway.deployment": "Deployments",
    "billing.modelprice": "Prices",
    "accounts.plan": "Plans",
    "billing.redemptioncode": "Redemption codes",
    "auth.user": "Users (operator role, single sign-on)",
}


@require_GET
@operator_page
def audit(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    entries = []
    next_cursor = ""
    cursor = request.GET.get("cursor", "")
    if form.is_valid():
        try:
            page = audit_page_all(form.query(), cursor=cursor)
        except AuditCursorError:
            form.add_error(None, "That page link is not one this page made: showing the newest entries.")
            page = audit_page_all(form.query())
            cursor = ""
        entries = [(entry, audit_changes(entry)) for entry in page.entries]
        next_cursor = page.next_cursor
    filters = {name: request.GET[name] for name in FILTERS if request.GET.get(name)}
    context = {
        "form": form,
        "entries": entries,
        "filtered": bool(filters),
        "first_page": not cursor,
        "newest_url": "?" + urlencode(filters),
        "next_url": "?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else "",
        "object_types": sorted({**AUDIT_OBJECT_TYPES, **OPERATOR_OBJECT_TYPES}.items()),
    }
    return render(request, "accounts/ops_audit.html", context)
