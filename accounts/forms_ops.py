"""Forms of the operator's tenants and plans pages (/ops/tenants/, /ops/plans/).

They parse and bound what a browser sends; the services decide (accounts/services.py,
accounts/members.py, billing/credits.py) and their ValidationErrors come back next to the fields
they name (`add_service_errors`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.forms import _limit_field, _split
from accounts.models import Plan, Tenant

# An operator's page may use every app, as a management command does (the services below it still
# depend one way, billing -> accounts).
from billing.credits import MAX_CREDIT_USD, USD_PLACES


class ServiceErrors(forms.Form):
    def add_service_errors(self, error: ValidationError) -> None:
        """Put a service's ValidationError next to the fields it names (the rest on top)."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, messages in error.message_dict.items():
            self.add_error(field if field in self.fields else None, messages)


def _plan_field() -> forms.ModelChoiceField:
    return forms.ModelChoiceField(
        queryset=Plan.objects.order_by("name"),
        required=False,
        empty_label="No plan (no default limits)",
        help_text="Default limits and allowed models; the overrides below win over them.",
    )


def _time_zone_field() -> forms.CharField:
    return forms.CharField(
        label="Time zone",
        max_length=64,
        initial="UTC",
        help_text="An IANA name such as Europe/Paris: budget periods and the console's times use it.",
    )


class TenantSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search name or slug")
    status = forms.ChoiceField(
        required=False, choices=[("", "Any status"), *Tenant.Status.choices], label="Status"
    )
    plan = forms.ModelChoiceField(
        queryset=Plan.objects.order_by("name"), required=False, empty_label="Any plan", label="Plan"
    )
    cursor = forms.CharField(required=False, max_length=20)

    def clean_q(self) -> str:
        query: str = self.cleaned_data["q"].strip()
        if not query.isprintable():
            raise ValidationError("Search for printable text.")
        return query


class TenantCreateForm(ServiceErrors):
    name = forms.CharField(max_length=200, help_text="As the tenant's people read it.")
    slug = forms.SlugField(
        max_length=100, help_text="In the console's URLs (/t/<slug>/): letters, digits, - and _."
    )
    plan = _plan_field()
    timezone = _time_zone_field()
    prepaid = forms.BooleanField(
        required=False,
        label="Runs on prepaid credits (calls are refused when the balance cannot cover them)",
    )
    owner_email = forms.EmailField(
        label="First owner's email",
        max_length=254,
        help_text="Someone with an account becomes owner at once; anyone else is invited by email.",
    )


class TenantEditForm(ServiceErrors):
    """The settings an operator changes on a tenant (its status has its own buttons)."""

    name = forms.CharField(max_length=200)
    plan = _plan_field()
    timezone = _time_zone_field()
    rpm_limit = _limit_field("Requests per minute", "Empty = the plan's.")
    tpm_limit = _limit_field("Tokens per minute", "Empty = the plan's.")
    concurrency_limit = _limit_field("Calls in flight", "Empty = the plan's.")
    end_user_rpm_limit = _limit_field("Requests per minute, each end user", "Empty = none.")
    end_user_tpm_limit = _limit_field("Tokens per minute, each end user", "Empty = none.")
    end_user_concurrency_limit = _limit_field("Calls in flight, each end user", "Empty = none.")
    body_logging = forms.BooleanField(
        required=False, label="Keep request and response bodies (to debug the tenant's integration)"
    )
    prepaid = forms.BooleanField(required=False, label="Runs on prepaid credits")

    FIELDS = (
        "name",
        "plan",
        "timezone",
        "rpm_limit",
        "tpm_limit",
        "concurrency_limit",
        "end_user_rpm_limit",
        "end_user_tpm_limit",
        "end_user_concurrency_limit",
        "body_logging",
        "prepaid",
    )

    @classmethod
    def initial_for(cls, tenant: Tenant) -> dict[str, Any]:
        return {name: getattr(tenant, name) for name in cls.FIELDS}


class TopupForm(ServiceErrors):
    amount = forms.DecimalField(
        label="Amount (USD)",
        max_digits=10 + USD_PLACES,
        decimal_places=USD_PLACES,
        max_value=MAX_CREDIT_USD,
        widget=forms.NumberInput(attrs={"step": "any", "min": 0, "placeholder": "25.00"}),
    )
    note = forms.CharField(required=False, max_length=500, help_text="Why, e.g. an invoice number.")
    start_prepaid = forms.BooleanField(
        required=False,
        label="Put the tenant on prepaid credits too (its calls are then refused when the balance "
        "cannot cover them)",
    )

    def clean_amount(self) -> Any:
        amount = self.cleaned_data["amount"]
        if amount is not None and amount <= 0:
            raise ValidationError("A top-up must be more than 0 USD.")
        return amount


class PlanForm(ServiceErrors):
    name = forms.CharField(max_length=100)
    rpm_limit = _limit_field("Requests per minute", "For each tenant on the plan; empty = none.")
    tpm_limit = _limit_field("Tokens per minute", "For each tenant on the plan; empty = none.")
    concurrency_limit = _limit_field("Calls in flight", "For each tenant on the plan; empty = none.")
    monthly_budget = forms.DecimalField(
        label="Monthly budget (USD)",
        required=False,
        max_digits=20,
        decimal_places=9,
        widget=forms.NumberInput(attrs={"step": "any", "min": 0, "placeholder": "500.00"}),
        help_text="A hard limit per tenant and calendar month (unless the tenant has its own monthly "
        "budget); empty = none.",
    )
    allowed_models = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.TextInput(attrs={"placeholder": "gpt-4.1, claude-sonnet-4.5"}),
        help_text="Route names or aliases, comma-separated; empty = every model.",
    )

    FIELDS = ("name", "rpm_limit", "tpm_limit", "concurrency_limit", "monthly_budget", "allowed_models")

    @classmethod
    def initial_for(cls, plan: Plan) -> dict[str, Any]:
        initial = {name: getattr(plan, name) for name in cls.FIELDS}
        initial["allowed_models"] = ", ".join(plan.allowed_models or [])
        return initial

    def clean_allowed_models(self) -> list[str]:
        return _split(self.cleaned_data["allowed_models"])
