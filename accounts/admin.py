"""Operator admin for accounts until the console exists.

Every save goes through accounts.services, which validates the whole row, so the admin cannot store
what the gateway cannot read. A new key is issued by the service and shown once, in the response to
the add form itself: never in a message (Django keeps those in a cookie), never stored.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from accounts import services
from accounts.models import ApiKey, Membership, Plan, Tenant
from config.admin import save_inline_through

# Where save_model leaves a new key's raw value for response_add, on the unsaved form instance.
_RAW_KEY = "_issued_raw_key"


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "rpm_limit", "tpm_limit", "concurrency_limit", "monthly_budget"]

    def save_model(self, request: HttpRequest, obj: Plan, form: ModelForm, change: bool) -> None:
        services.plan_save(plan=obj)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "plan", "status", "created_at"]
    list_filter = ["status", "plan"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def save_model(self, request: HttpRequest, obj: Tenant, form: ModelForm, change: bool) -> None:
        services.tenant_save(tenant=obj)

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        save_inline_through(formset, lambda membership: services.membership_save(membership=membership))


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "masked", "status", "expires_at", "created_at"]
    list_filter = ["status", "tenant"]
    search_fields = ["name", "prefix", "tenant__name"]
    readonly_fields = ["masked", "created_by", "created_at", "revoked_at"]
    fields = [
        "tenant",
        "name",
        "masked",
        "status",
        "expires_at",
        "allowed_models",
        "allowed_ips",
        "rpm_limit",
        "tpm_limit",
        "concurrency_limit",
        "created_by",
        "created_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    @admin.display(description="key")
    def masked(self, obj: ApiKey) -> str:
        return f"th-{obj.prefix}…" if obj.prefix else "(issued on save)"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: ModelForm, change: bool) -> None:
        if change:
            services.api_key_save(api_key=obj)
            return
        issued = services.api_key_issue(
            tenant=obj.tenant,
            name=obj.name,
            created_by=request.user,
            expires_at=obj.expires_at,
            allowed_models=obj.allowed_models,
            allowed_ips=obj.allowed_ips,
            rpm_limit=obj.rpm_limit,
            tpm_limit=obj.tpm_limit,
            concurrency_limit=obj.concurrency_limit,
        )
        # The admin goes on with the form's instance (history entry, response): make it the saved key.
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(issued.api_key, field.attname))
        obj._state.adding = False
        setattr(obj, _RAW_KEY, issued.raw)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        raw = getattr(obj, _RAW_KEY, None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API key issued: copy it now",
            "api_key": obj,
            "raw_key": raw,
            "change_url": reverse("admin:accounts_apikey_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, "admin/accounts/apikey/issued.html", context)
        # Nothing on the way may keep the page: no browser cache, no proxy, no back-button copy.
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        revoked = 0
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
            revoked += 1
        messages.success(request, f"Revoked {revoked} key(s).")
