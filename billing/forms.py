"""Console forms of billing: the overview's range, the usage explorer's filter, a budget, a code.

They parse and bound what a browser sends; the rules (what a budget may be, what a code is worth)
stay in the services, whose ValidationErrors the views put next to the fields."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.models import ApiKey
from billing.models import Budget
from billing.overview import PRESETS
from billing.selectors import STATUS_CLASSES

RANGE_CHOICES = [(preset, preset) for preset in PRESETS] + [("custom", "custom")]
EARLIEST = date(2000, 1, 1)


class RangeForm(forms.Form):
    range = forms.ChoiceField(choices=RANGE_CHOICES, required=False)
    first = forms.DateField(required=False, label="From")
    last = forms.DateField(required=False, label="To")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        for name in ("first", "last"):
            day = data.get(name)
            if day is not None and not EARLIEST <= day <= date(2100, 1, 1):
                self.add_error(name, "Choose a day between 2000 and 2100.")
        if not data.get("range"):
            data["range"] = "custom" if data.get("first") and data.get("last") else "7d"
        return data


def _key_choices(keys: list[ApiKey]) -> list[tuple[str, str]]:
    return [("", "Any key")] + [(str(key.pk), f"{key.name} (th-{key.prefix}…)") for key in keys]


class UsageFilterForm(RangeForm):
    key = forms.ChoiceField(required=False, label="Key")
    model = forms.CharField(required=False, max_length=200, label="Model")
    end_user = forms.CharField(required=False, max_length=200, label="End user")
    status = forms.ChoiceField(
        required=False,
        choices=[("", "Any status"), *((name, name) for name in STATUS_CLASSES)],
        label="Status",
    )

    def __init__(self, *args: Any, keys: list[ApiKey], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["key"].choices = _key_choices(keys)  # type: ignore[attr-defined]


_SPLIT = re.compile(r"[\s,;]+")


class BudgetForm(forms.Form):
    scope = forms.ChoiceField(choices=Budget.Scope.choices, initial=Budget.Scope.TENANT)
    api_key = forms.ChoiceField(required=False, label="Key", help_text="For a key budget.")
    end_user = forms.CharField(
        required=False, max_length=200, help_text="For an end-user budget: one end user, or empty for each."
    )
    amount = forms.DecimalField(
        max_digits=20, decimal_places=9, label="Amount (USD)", help_text="Up to 9 decimals (nano-dollars)."
    )
    period = forms.ChoiceField(choices=Budget.Period.choices, initial=Budget.Period.MONTH)
    hard = forms.BooleanField(
        required=False, initial=True, label="Hard limit: refuse calls it cannot pay for"
    )
    thresholds = forms.CharField(
        max_length=200, initial="50, 80, 100", help_text="Alert at these percentages, as in 50, 80, 100."
    )
    emails = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
        label="Alert emails",
        help_text="Separated by commas or new lines.",
    )
    webhook_url = forms.URLField(required=False, max_length=500, assume_scheme="https", label="Webhook URL")

    def __init__(self, *args: Any, keys: list[ApiKey], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["api_key"].choices = [("", "—"), *_key_choices(keys)[1:]]  # type: ignore[attr-defined]

    def clean_thresholds(self) -> list[int]:
        text = self.cleaned_data["thresholds"]
        parts = [part for part in _SPLIT.split(text.replace("%", " ")) if part]
        if not parts or not all(part.isascii() and part.isdigit() and len(part) <= 4 for part in parts):
            raise ValidationError("Enter whole percentages between 1 and 1000, as in 50, 80, 100.")
        return [int(part) for part in parts]

    def clean_emails(self) -> list[str]:
        return [part for part in _SPLIT.split(self.cleaned_data["emails"]) if part]

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount <= 0:
            raise ValidationError("A budget must be more than 0 USD.")
        return amount


class RedeemForm(forms.Form):
    code = forms.CharField(max_length=100, label="Redemption code", strip=True)
