"""Forms of the members, invitations and signing-keys pages. They check shape only (lengths, choices,
two passwords alike); every rule is the service's (accounts/members.py, accounts/signing.py), whose
ValidationError `add_service_errors` puts next to the fields it names."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from accounts.members import MAX_NAME_CHARS, Role
from accounts.models import SigningKey

ROLE_HELP = {
    Role.OWNER: "everything, including owners and roles",
    Role.ADMIN: "keys, budgets, members and signing keys",
    Role.MEMBER: "sees usage and keys, exports usage",
    Role.VIEWER: "sees the overview, usage, keys and budgets",
}


def role_choices(actor_role: str) -> list[tuple[str, str]]:
    """The roles someone with `actor_role` may hand out (only an owner makes owners)."""
    roles = list(Role.values) if actor_role == Role.OWNER else [r for r in Role.values if r != Role.OWNER]
    return [(role, role.capitalize()) for role in roles]


def add_service_errors(form: forms.Form, exc: ValidationError) -> None:
    """A service's ValidationError on the form: next to its field where the form has it, else on top."""
    if hasattr(exc, "error_dict"):
        for field, messages in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, exc.messages)


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("Remove the NUL character.")


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, validators=[_no_nul])
    role = forms.ChoiceField(choices=[], initial=Role.MEMBER)

    def __init__(self, *args: Any, actor_role: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = role_choices(actor_role)  # type: ignore[attr-defined]
        self.fields["email"].widget.attrs.update({"placeholder": "name@example.com", "autocomplete": "off"})


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=[(role, role.capitalize()) for role in Role.values])


class AcceptForm(forms.Form):
    """A new account for the invited address: a name and a password typed twice."""

    name = forms.CharField(max_length=MAX_NAME_CHARS, required=False, validators=[_no_nul], label="Your name")
    password1 = forms.CharField(
        label="Password",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        max_length=4096,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        if (
            data
            and data.get("password1")
            and data.get("password2")
            and data["password1"] != data["password2"]
        ):
            self.add_error("password2", "The two passwords differ.")
        return data


class SigningKeyForm(forms.Form):
    name = forms.CharField(max_length=200, validators=[_no_nul])
    issuer = forms.CharField(
        max_length=200, validators=[_no_nul], help_text="The `iss` claim your backend puts in its tokens."
    )
    algorithm = forms.ChoiceField(choices=SigningKey.Algorithm.choices, initial=SigningKey.Algorithm.HS256)
    key_id = forms.CharField(
        max_length=200,
        required=False,
        validators=[_no_nul],
        label="Key id",
        help_text="The `kid` header, if sent.",
    )
    secret = forms.CharField(
        required=False,
        strip=False,
        max_length=2048,
        validators=[_no_nul],
        # Write-only: never rendered back, not even when the form returns with an error.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        label="HS256 secret",
        help_text="Leave empty and Tollhouse generates one, shown once. At least 32 bytes if you bring your own.",
    )
    public_key = forms.CharField(
        required=False,
        max_length=20_000,
        validators=[_no_nul],
        widget=forms.Textarea(
            attrs={"rows": 5, "class": "mono", "placeholder": "-----BEGIN PUBLIC KEY-----"}
        ),
        label="Public key (RS256, ES256)",
        help_text="PEM. Only the public half: your backend keeps the private key.",
    )
