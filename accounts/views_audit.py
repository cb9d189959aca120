"""The audit log, /t/<slug>/audit/: who changed what in the tenant, newest first, with the values
before and after; filtered by the kind of object; keyset-paginated (`?cursor=`), so the thousandth
page costs what the first does. Times in the tenant's time zone (tenant_page sets it)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.access import tenant_page
from accounts.models import Membership, Tenant
from accounts.selectors import AUDIT_OBJECT_TYPES, AuditCursorError, audit_changes, audit_page


@require_GET
@tenant_page("audit.view")
def audit(request: HttpRequest, *, tenant: Tenant, membership: Membership) -> HttpResponse:
    object_type = request.GET.get("type", "")
    if object_type and object_type not in AUDIT_OBJECT_TYPES:
        return HttpResponseBadRequest("Unknown object type.")
    try:
        page = audit_page(tenant, object_type=object_type or None, cursor=request.GET.get("cursor", ""))
    except AuditCursorError:
        return HttpResponseBadRequest("Bad page cursor.")
    context = {
        "entries": [(entry, audit_changes(entry)) for entry in page.entries],
        "next_cursor": page.next_cursor,
        "first_page": not request.GET.get("cursor"),
        "object_type": object_type,
        "object_types": list(AUDIT_OBJECT_TYPES.items()),
    }
    return render(request, "accounts/audit.html", context)
