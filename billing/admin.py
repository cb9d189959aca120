"""Operator admin for billing until the console exists.

Prices and budgets are edited here, saved through their services (which validate the whole row).
Everything else is a record of what happened (usage, credit lines, redemption codes, alerts sent,
webhook attempts): written only by its service or the pipeline, shown read-only. A redemption code
is never shown, only its hint: the code itself is not stored, only its digest, and not even the
digest is displayed.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS
from django.db.models import QuerySet, UniqueConstraint
from django.http import HttpRequest
from django.utils import timezone

from accounts.audit import Actor
from accounts.validators import non_negative
from billing import budgets, services
from billing.models import (
    Budget,
    BudgetAlert,
    CreditEntry,
    ModelPrice,
    RedemptionCode,
    UsageRecord,
    WebhookAttempt,
)
from config.admin import ReadOnlyAdmin

# What the read-only pages show (a tuple: Django's admin takes one for both lists).
_CREDIT_ENTRY_FIELDS = (
    "tenant",
    "kind",
    "amount",
    "note",
    "request_id",
    "redemption_code",
    "created_by",
    "created_at",
)
_REDEMPTION_CODE_FIELDS = (
    "hint_masked",
    "batch",
    "amount",
    "expires_at",
    "redeemed_at",
    "redeemed_by",
    "created_by",
    "created_at",
)
_WEBHOOK_ATTEMPT_FIELDS = (
    "alert",
    "url",
    "attempt",
    "status_code",
    "error",
    "delivered",
    "final",
    "created_at",
)
_BUDGET_ALERT_FIELDS = (
    "budget",
    "subject",
    "period_start",
    "kind",
    "threshold",
    "spend",
    "forecast_date",
    "created_at",
)


class ModelPriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = [
            "model",
            "input_per_mtok",
            "cached_input_per_mtok",
            "output_per_mtok",
            "cache_write_per_mtok",
            "cache_write_1h_per_mtok",
            "effective_from",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A negative price is refused next to its field (the table's check constraint would only
        # say "constraint violated").
        for name in services.PRICE_FIELDS:
            self.fields[name].validators.append(non_negative)

    def clean(self) -> dict[str, Any]:
        # Never retroactive, as in the operator console (billing.services.model_price_schedule).
        cleaned = super().clean() or {}
        now = timezone.now()
        if self.instance.pk is not None and self.instance.effective_from <= now:
            raise forms.ValidationError(
                "This price is in force and cannot change: add a new price from a future date."
            )
        moment = cleaned.get("effective_from")
        if moment is not None and moment < now:
            self.add_error("effective_from", "Must be now or later: a price change is never retroactive.")
        return cleaned


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices are saved through billing.services, which validates them; every change reaches the
    gateways' price caches at once."""

    form = ModelPriceForm
    list_display = [
        "model",
        "input_per_mtok",
        "cached_input_per_mtok",
        "output_per_mtok",
        "cache_write_per_mtok",
        "effective_from",
    ]
    search_fields = ["model"]

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: forms.ModelForm, change: bool) -> None:
        services.model_price_save(price=obj, actor=Actor.admin(request.user))

    def has_delete_permission(self, request: HttpRequest, obj: ModelPrice | None = None) -> bool:
        # A price in force is never withdrawn (it priced calls already); a scheduled one may be.
        if obj is not None and obj.effective_from <= timezone.now():
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # it would not ask each price whether it is in force
        return actions


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
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
        "attempts",
        "ingress",
        "upstream_format",
        "latency_ms",
        "request_id",
    ]
    list_filter = ["status", "streamed", "usage_estimated", "ingress", "upstream_format", "requested_model"]
    search_fields = ["request_id", "client_request_id", "session"]
    date_hierarchy = "created_at"
    list_select_related = ["tenant"]
    show_full_result_count = False


_CONSTRAINT_MESSAGES = {
    constraint.get_violation_error_message()
    for constraint in Budget._meta.constraints
    if isinstance(constraint, UniqueConstraint)
}


class BudgetForm(forms.ModelForm):
    # Declared for its scheme: a webhook typed without one is an https one.
    webhook_url = forms.URLField(
        max_length=500, required=False, assume_scheme="https", validators=[budgets.validate_webhook_url]
    )

    class Meta:
        model = Budget
        fields = [
            "tenant",
            "scope",
            "api_key",
            "end_user",
            "amount",
            "period",
            "hard",
            "thresholds",
            "emails",
            "webhook_url",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The service's own checks, shown next to their fields instead of failing the save.
        self.fields["amount"].validators.append(budgets.validate_amount)

    def _post_clean(self) -> None:  # type: ignore[misc]  # (not in the stubs)
        super()._post_clean()  # type: ignore[misc]
        # The table's constraints only say "Constraint … is violated": say what it means instead.
        errors = self.errors.get(NON_FIELD_ERRORS)
        if errors:
            kept = [message for message in errors if message not in _CONSTRAINT_MESSAGES]
            if len(kept) < len(errors):
                messages = [str(message) for message in kept] + [budgets.DUPLICATE]
                self.errors[NON_FIELD_ERRORS] = self.error_class(messages, error_class="nonfield")


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Saved and deleted through billing.budgets; every change reaches the gateways at once."""

    form = BudgetForm
    list_display = ["tenant", "scope", "subject", "period", "amount", "hard", "updated_at"]
    list_filter = ["scope", "period", "hard"]
    search_fields = ["tenant__name", "tenant__slug", "api_key__prefix", "api_key__name", "end_user"]
    list_select_related = ["tenant", "api_key"]
    autocomplete_fields = ["tenant", "api_key"]
    fieldsets = [
        (None, {"fields": ["tenant", "period", "amount", "hard"]}),
        (
            "Whose spending",
            {
                "fields": ["scope", "api_key", "end_user"],
                "description": "Tenant: every call of the tenant. Key: the calls of the key chosen. "
                "End user: the calls of the end user named, or of each end user when left empty.",
            },
        ),
        ("Alerts", {"fields": ["thresholds", "emails", "webhook_url"]}),
    ]

    @admin.display(description="subject")
    def subject(self, obj: Budget) -> str:
        if obj.scope == Budget.Scope.KEY and obj.api_key is not None:
            return f"{obj.api_key.name} (th-{obj.api_key.prefix}…)"
        if obj.scope == Budget.Scope.END_USER:
            return obj.end_user or "each end user"
        return "the whole tenant"

    def save_model(self, request: HttpRequest, obj: Budget, form: forms.ModelForm, change: bool) -> None:
        budgets.budget_save(budget=obj, actor=Actor.admin(request.user))

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        budgets.budget_delete(budget=obj, actor=Actor.admin(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            budgets.budget_delete(budget=budget, actor=Actor.admin(request.user))


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    """The prepaid-credit ledger is append-only: lines are added by billing.credits (commands, the
    usage pipeline), never edited; a mistake is corrected by an adjustment line."""

    list_display = ["created_at", "tenant", "kind", "amount", "note", "request_id"]
    list_filter = ["kind"]
    search_fields = ["tenant__name", "tenant__slug", "request_id", "note"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = _CREDIT_ENTRY_FIELDS
    readonly_fields = _CREDIT_ENTRY_FIELDS


@admin.register(RedemptionCode)
class RedemptionCodeAdmin(ReadOnlyAdmin):
    list_display = ["hint_masked", "batch", "amount", "expires_at", "redeemed_at", "redeemed_by"]
    list_filter = ["redeemed_at", "expires_at"]
    search_fields = ["batch", "hint"]
    list_select_related = ["redeemed_by"]
    # Never the digest: the hint is all an operator needs to tell codes apart.
    fields = _REDEMPTION_CODE_FIELDS
    readonly_fields = _REDEMPTION_CODE_FIELDS

    @admin.display(description="code")
    def hint_masked(self, obj: RedemptionCode) -> str:
        return f"{obj.hint}…"


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    fields = _WEBHOOK_ATTEMPT_FIELDS[1:]  # not the alert: the page is the alert's
    readonly_fields = _WEBHOOK_ATTEMPT_FIELDS[1:]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(BudgetAlert)
class BudgetAlertAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "budget", "subject", "kind", "threshold", "spend", "period_start"]
    list_filter = ["kind"]
    search_fields = ["budget__tenant__name", "budget__tenant__slug", "subject"]
    list_select_related = ["budget__tenant"]
    date_hierarchy = "created_at"
    fields = _BUDGET_ALERT_FIELDS
    readonly_fields = _BUDGET_ALERT_FIELDS
    inlines = [WebhookAttemptInline]


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "alert", "url", "attempt", "status_code", "error", "delivered", "final"]
    list_filter = ["delivered", "final"]
    search_fields = ["url"]
    list_select_related = ["alert__budget__tenant"]
    date_hierarchy = "created_at"
    fields = _WEBHOOK_ATTEMPT_FIELDS
    readonly_fields = _WEBHOOK_ATTEMPT_FIELDS
