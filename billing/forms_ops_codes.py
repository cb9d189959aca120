"""The operator's redemption code batch form (/ops/codes/): it parses and bounds; the service
(billing.credits.code_batch_create) decides and its errors come back on the form."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.credits import MAX_CODES_PER_BATCH, MAX_CREDIT_USD, USD_PLACES


class CodeBatchForm(forms.Form):
    count = forms.IntegerField(
        label="How many codes",
        min_value=1,
        max_value=MAX_CODES_PER_BATCH,
        initial=10,
        help_text=f"From 1 to {MAX_CODES_PER_BATCH:,} in one batch.",
        widget=forms.NumberInput(attrs={"min": 1, "max": MAX_CODES_PER_BATCH, "step": 1}),
    )
    amount = forms.DecimalField(
        label="Value of each code (USD)",
        max_digits=10 + USD_PLACES,
        decimal_places=USD_PLACES,
        max_value=MAX_CREDIT_USD,
        widget=forms.NumberInput(attrs={"step": "any", "min": 0, "placeholder": "10.00"}),
    )
    expires_at = forms.DateTimeField(
        label="Expires",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="In UTC; empty = never.",
    )

    def clean_amount(self) -> Decimal:
        amount: Decimal = self.cleaned_data["amount"]
        if amount <= 0:
            raise ValidationError("A code must be worth more than 0 USD.")
        return amount

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data["expires_at"]
        if expires_at is not None and expires_at <= timezone.now():
            raise ValidationError("The expiry must be a moment in the future.")
        return expires_at
