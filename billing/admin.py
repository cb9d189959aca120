from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from accounts.validators import non_negative
from billing import services
from billing.models import ModelPrice, UsageRecord


class ModelPriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "effective_from"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A negative price is refused next to its field (the table's check constraint would only
        # say "constraint violated").
        for name in ("input_per_mtok", "cached_input_per_mtok", "output_per_mtok"):
            self.fields[name].validators.append(non_negative)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices are saved through billing.services, which validates them; every change reaches the
    gateways' price caches at once."""

    form = ModelPriceForm
    list_display = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "effective_from"]
    search_fields = ["model"]

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: forms.ModelForm, change: bool) -> None:
        services.model_price_save(price=obj)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """Usage is written by the pipeline only; the admin reads it."""

    list_display = [
        "created_at",
        "tenant",
        "requested_model",
        "served_model",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "streamed",
        "latency_ms",
        "request_id",
    ]
    list_filter = ["status", "streamed", "usage_estimated", "requested_model"]
    search_fields = ["request_id", "client_request_id"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
