from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from gateway.models import Deployment, ModelRoute, Provider


class ProviderForm(forms.ModelForm):
    # Write-only: the stored credential is never rendered back into the page.
    credential = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current credential.",
    )
    clear_credential = forms.BooleanField(required=False)
    base_url = forms.URLField(assume_scheme="https", help_text="Up to and including /v1.")

    class Meta:
        model = Provider
        fields = ["name", "kind", "base_url", "connect_timeout", "read_timeout", "enabled"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "has_credential", "enabled"]
    list_filter = ["kind", "enabled"]

    @admin.display(boolean=True, description="credential")
    def has_credential(self, obj: Provider) -> bool:
        return bool(obj.credential_encrypted)

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        if form.cleaned_data.get("clear_credential"):
            obj.set_credential("")
        elif form.cleaned_data.get("credential"):
            obj.set_credential(form.cleaned_data["credential"])
        super().save_model(request, obj, form, change)


class DeploymentInline(admin.TabularInline):
    model = Deployment
    extra = 0


@admin.register(ModelRoute)
class ModelRouteAdmin(admin.ModelAdmin):
    list_display = ["name", "aliases", "strategy", "enabled"]
    search_fields = ["name"]
    inlines = [DeploymentInline]
