"""Operator admin for accounts until the console exists. Keys are issued through the service,
so the raw key is shown exactly once (as a message) and only its digest is stored."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from accounts import services
from accounts.models import ApiKey, Membership, Plan, Tenant


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "rpm_limit", "tpm_limit", "concurrency_limit", "monthly_budget"]


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
        "budget",
        "created_by",
        "created_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    @admin.display(description="key")
    def masked(self, obj: ApiKey) -> str:
        return f"th-{obj.prefix}…" if obj.prefix else "(issued on save)"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
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
            budget=obj.budget,
        )
        obj.pk = issued.api_key.pk
        obj.prefix, obj.digest = issued.api_key.prefix, issued.api_key.digest
        messages.warning(request, f"New API key (shown once, copy it now): {issued.raw}")

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: Any) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key)
        messages.success(request, f"Revoked {queryset.count()} key(s).")
