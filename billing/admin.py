from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from billing.models import ModelPrice, UsageRecord


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_mtok", "cached_input_per_mtok", "output_per_mtok", "effective_from"]
    search_fields = ["model"]


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
