"""The operator console's forms for providers, routes and deployments. They parse what was typed;
the rules are the services' (gateway/services.py), whose errors the views put back on the fields."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from gateway.connection import DEFAULT_PROMPT
from gateway.models import Deployment, ModelRoute, Provider

# A credential is a line of printable text; the longest real ones (JWT-style service tokens) are a
# few kB.
MAX_CREDENTIAL_CHARS = 4096


class ProviderForm(forms.ModelForm):
    # Write-only: the stored credential is never rendered back into the page.
    credential = forms.CharField(
        required=False,
        max_length=MAX_CREDENTIAL_CHARS,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the current one.",
    )

    class Meta:
        model = Provider
        fields = [
            "name",
            "kind",
            "base_url",
            "credential_env",
            "connect_timeout",
            "first_byte_timeout",
            "read_timeout",
            "total_timeout",
            "enabled",
        ]
        labels = {"credential_env": "Credential from environment variable"}

    def clean_credential(self) -> str:
        value: str = self.cleaned_data.get("credential", "")
        if any(not ch.isprintable() or ch.isspace() for ch in value):
            raise forms.ValidationError("A credential is one word of printable characters, without spaces.")
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("credential") and cleaned.get("credential_env"):
            self.add_error(
                "credential", "Give either a credential to store or an environment variable, not both."
            )
        return cleaned


class ConnectionTestForm(forms.Form):
    model = forms.CharField(
        max_length=200,
        label="Upstream model",
        help_text="The model id the provider knows; one request of at most one output token.",
    )
    prompt = forms.CharField(max_length=500, initial=DEFAULT_PROMPT, required=False)


_NAME_SPLIT = re.compile(r"[\s,]+")


class NamesField(forms.CharField):
    """Model names typed as a comma- or space-separated list, kept as a list of strings."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 4000)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [name for name in _NAME_SPLIT.split(text) if name]

    def validate(self, value: Any) -> None:
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")

    def run_validators(self, value: Any) -> None:
        return None  # the model's validators (validate_names) run in the service


class RouteForm(forms.ModelForm):
    aliases = NamesField(help_text="Other names clients may ask for, separated by commas, e.g. gpt4.")
    fallbacks = NamesField(
        help_text="Routes to try, in order, when every deployment of this one failed, e.g. gpt-4.1-mini."
    )

    class Meta:
        model = ModelRoute
        fields = [
            "name",
            "aliases",
            "strategy",
            "max_output_tokens",
            "context_window",
            "fallbacks",
            "enabled",
        ]


class DeploymentForm(forms.ModelForm):
    class Meta:
        model = Deployment
        fields = ["provider", "upstream_model", "priority", "weight", "rpm_limit", "tpm_limit", "enabled"]
        labels = {"rpm_limit": "RPM cap", "tpm_limit": "TPM cap"}
        help_texts = {
            "rpm_limit": "The upstream's requests per minute for this deployment; empty: none.",
            "tpm_limit": "The upstream's tokens per minute for this deployment; empty: none.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].queryset = Provider.objects.order_by("name")  # type: ignore[attr-defined]
