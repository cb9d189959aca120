"""The operator audit log's filter (/ops/audit/): tenant, actor, object and time, each bounded and
checked, so a bad filter is a sentence next to its field, never a 500."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms

from accounts.models import Tenant
from accounts.selectors import AuditFilter

NO_TENANT = "-"  # the tenant field's value for "the operator's own changes" (no tenant)
_OBJECT_TYPE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 1, 1)


class AuditFilterForm(forms.Form):
    tenant = forms.CharField(
        required=False,
        max_length=100,
        label="Tenant",
        help_text=f"A tenant's slug, or {NO_TENANT} for the operator's own changes (providers, routes, prices).",
    )
    actor = forms.CharField(
        required=False,
        max_length=200,
        label="Actor",
        help_text="Part of who: an email, console:, api:, command:…",
    )
    type = forms.CharField(
        required=False,
        max_length=64,
        label="Object type",
        widget=forms.TextInput(attrs={"list": "audit-object-types", "placeholder": "accounts.apikey"}),
    )
    object_id = forms.CharField(required=False, max_length=64, label="Object id")
    first = forms.DateField(
        required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )
    last = forms.DateField(required=False, label="To (UTC)", widget=forms.DateInput(attrs={"type": "date"}))

    def clean_tenant(self) -> Tenant | str | None:
        slug = (self.cleaned_data.get("tenant") or "").strip()
        if not slug:
            return None
        if slug == NO_TENANT:
            return NO_TENANT
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise forms.ValidationError("No tenant has this slug.")
        return tenant

    def clean_actor(self) -> str:
        actor: str = (self.cleaned_data.get("actor") or "").strip()
        if "\x00" in actor:
            raise forms.ValidationError("An actor has no NUL character.")
        return actor

    def clean_type(self) -> str:
        value: str = (self.cleaned_data.get("type") or "").strip().lower()
        if value and not _OBJECT_TYPE.match(value):
            raise forms.ValidationError("An object type reads app.model, as in accounts.apikey.")
        return value

    def clean_object_id(self) -> str:
        value: str = (self.cleaned_data.get("object_id") or "").strip()
        if "\x00" in value:
            raise forms.ValidationError("An object id has no NUL character.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("first", "last"):
            day = data.get(name)
            if day is not None and not EARLIEST <= day <= LATEST:
                self.add_error(name, "Choose a day between 2000 and 2100.")
        first, last = data.get("first"), data.get("last")
        if first and last and last < first:
            self.add_error("last", "The last day comes before the first.")
        return data

    def query(self) -> AuditFilter:
        """The selector's filter (call after is_valid())."""
        data = self.cleaned_data
        tenant = data.get("tenant")
        first, last = data.get("first"), data.get("last")
        return AuditFilter(
            tenant=tenant if isinstance(tenant, Tenant) else None,
            operator_only=tenant == NO_TENANT,
            actor=data.get("actor") or "",
            object_type=data.get("type") or "",
            object_id=data.get("object_id") or "",
            start=datetime.combine(first, time.min, tzinfo=UTC) if first else None,
            end=datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC) if last else None,
        )
