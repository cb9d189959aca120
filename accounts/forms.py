"""Console forms of accounts. Forms only parse and show errors; the services decide and store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError


class SignInForm(AuthenticationForm):
    username = forms.CharField(
        label="Email or username",
        max_length=254,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username"}),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Django sizes the box to the username column; an email address may be longer.
        self.fields["username"].max_length = 254  # type: ignore[attr-defined]
        self.fields["username"].widget.attrs["maxlength"] = "254"


# --- keys -------------------------------------------------------------------------------------------

_MAX_INT = 2_147_483_647  # the limit columns are PostgreSQL integers


def _split(value: str) -> list[str]:
    """A list typed into a box: one entry per line or comma."""
    return [part.strip() for part in value.replace(",", "\n").splitlines() if part.strip()]


def _limit_field(label: str, help_text: str) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        required=False,
        min_value=1,
        max_value=_MAX_INT,
        help_text=help_text,
        widget=forms.NumberInput(attrs={"min": 1, "step": 1}),
    )


class KeyIssueForm(forms.Form):
    """Parses what the keys page's issue form sends; `billing.budgets.api_key_issue_with_budget`
    decides (a key looser than its tenant, an unknown CIDR, ...) and its errors come back here next
    to their fields (`add_service_errors`)."""

    # Service field name -> form field name.
    SERVICE_FIELDS = {"amount": "budget", "period": "budget_period"}

    name = forms.CharField(
        label="Name", max_length=200, help_text="To recognise the key by, e.g. the app using it."
    )
    allowed_models = forms.CharField(
        label="Allowed models",
        required=False,
        max_length=4000,
        widget=forms.TextInput(attrs={"placeholder": "gpt-4.1, claude-sonnet-4.5"}),
        help_text="Comma-separated; empty = every model the tenant may use.",
    )
    allowed_ips = forms.CharField(
        label="Allowed client IPs",
        required=False,
        max_length=4000,
        widget=forms.TextInput(attrs={"placeholder": "203.0.113.7, 10.0.0.0/8"}),
        help_text="IP addresses or CIDR ranges, comma-separated; empty = from anywhere.",
    )
    expires_at = forms.DateTimeField(
        label="Expires",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="In the tenant's time zone; empty = never.",
    )
    rpm_limit = _limit_field("Requests per minute", "Empty = the tenant's limit.")
    tpm_limit = _limit_field("Tokens per minute", "Empty = the tenant's limit.")
    concurrency_limit = _limit_field("Calls in flight", "Empty = the tenant's limit.")
    cache = forms.BooleanField(
        label="Response cache: answer repeated identical requests from the cache",
        required=False,
        help_text="A hit costs nothing; a call can still opt out with x-tollhouse-cache: off.",
    )
    cache_ttl = _limit_field("Cache TTL (seconds)", "How long an answer is kept; empty = the default.")
    budget = forms.DecimalField(
        label="Budget (USD)",
        required=False,
        max_digits=20,
        decimal_places=9,
        widget=forms.NumberInput(attrs={"step": "any", "min": 0, "placeholder": "25.00"}),
        help_text="The key's own spending limit; empty = none.",
    )
    budget_period = forms.ChoiceField(
        label="Budget period",
        required=False,
        choices=[("", "—"), ("day", "per day"), ("week", "per week"), ("month", "per month")],
    )
    budget_hard = forms.BooleanField(
        label="Hard budget: refuse calls past it (else only alert)", required=False, initial=True
    )

    def clean_allowed_models(self) -> list[str]:
        return _split(self.cleaned_data["allowed_models"])

    def clean_allowed_ips(self) -> list[str]:
        return _split(self.cleaned_data["allowed_ips"])

    def clean_budget_period(self) -> str | None:
        return self.cleaned_data["budget_period"] or None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if (
            cleaned.get("budget") is not None
            and not cleaned.get("budget_period")
            and "budget_period" not in self.errors
        ):
            self.add_error("budget_period", "Choose the budget's period.")
        if cleaned.get("budget_period") and cleaned.get("budget") is None and "budget" not in self.errors:
            self.add_error("budget", "Enter the budget's amount, or choose no period.")
        return cleaned

    def add_service_errors(self, error: ValidationError) -> None:
        """Put a service's ValidationError next to the fields it names (the rest on top)."""
        if not hasattr(error, "error_dict"):
            self.add_error(None, error)
            return
        for field, messages in error.message_dict.items():
            name = self.SERVICE_FIELDS.get(field, field)
            self.add_error(name if name in self.fields else None, messages)


class KeyRotateForm(forms.Form):
    GRACE_CHOICES = [
        ("0", "none: the old secret stops now"),
        ("3600", "1 hour"),
        ("86400", "24 hours"),
        ("604800", "7 days"),
    ]
    grace = forms.TypedChoiceField(
        label="Old secret keeps working for",
        choices=GRACE_CHOICES,
        coerce=int,
        initial="86400",
        help_text="Both secrets work meanwhile; spend, budgets and rate limits carry on unchanged.",
    )

    def grace_period(self) -> timedelta:
        return timedelta(seconds=self.cleaned_data["grace"])
