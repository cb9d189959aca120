"""Operator admin for the upstream configuration. Every save goes through gateway.services, which
validates the row, so the admin cannot store a provider, route or deployment the gateway cannot use."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from accounts.audit import Actor
from config.admin import ReadOnlyAdmin, save_inline_through
from gateway import services
from gateway.models import BodyLog, Deployment, ModelRoute, Provider


class ProviderForm(forms.ModelForm):
    # Write-only: the stored credential is never rendered back into the page.
    credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current credential.",
    )
    clear_credential = forms.BooleanField(required=False)

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "connect_timeout",
            "first_byte_timeout",
            "read_timeout",
            "total_timeout",
            "enabled",
        ]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "has_credential", "enabled"]
    list_filter = ["kind", "enabled"]

    @admin.display(boolean=True, description="credential")
    def has_credential(self, obj: Provider) -> bool:
        return bool(obj.credential_encrypted)

    def save_model(self, request: HttpRequest, obj: Provider, form: ModelForm, change: bool) -> None:
        credential = None  # keep the stored one
        if form.cleaned_data.get("clear_credential"):
            credential = ""
        elif form.cleaned_data.get("credential"):
            credential = form.cleaned_data["credential"]
        services.provider_save(provider=obj, credential=credential, actor=Actor.admin(request.user))


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    list_display = ["name", "aliases", "strategy", "enabled"]
    search_fields = ["name"]
    inlines = [DeploymentInline]

    def save_model(self, request: HttpRequest, obj: ModelRoute, form: ModelForm, change: bool) -> None:
        services.route_save(route=obj, actor=Actor.admin(request.user))

    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        actor = Actor.admin(request.user)
        save_inline_through(
            formset,
            lambda deployment: services.deployment_save(deployment=deployment, actor=actor),
            lambda deployment: services.deployment_delete(deployment=deployment, actor=actor),
        )


@admin.register(BodyLog)
class BodyLogAdmin(ReadOnlyAdmin):
    """The bodies kept for tenants that turned body logging on (already redacted and capped when
    written; deleted by retention, not by hand)."""

    list_display = [
        "created_at",
        "tenant",
        "endpoint",
        "status",
        "request_id",
        "request_truncated",
        "response_truncated",
    ]
    list_filter = ["tenant", "endpoint", "status"]
    search_fields = ["=request_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    readonly_fields = (
        "created_at",
        "tenant",
        "api_key_id",
        "endpoint",
        "status",
        "request_id",
        "request_body",
        "request_truncated",
        "response_body",
        "response_truncated",
    )
    fields = readonly_fields
