"""Console forms of accounts. Forms only parse and show errors; the services decide and store."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm


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
