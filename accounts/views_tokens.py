"""/account/tokens/: the signed-in user's personal access tokens for the management API (/api/v1/).

Create one (its secret is rendered straight into the response to the POST that made it, with
no-store caching: never put in a session, a cookie, a message or a redirect, never shown again) or
revoke one. A token acts as its user: their role in each tenant, operator rights if they have them.
Writes go through accounts.services (`personal_token_create`, `personal_token_revoke`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from accounts.audit import Actor
from accounts.forms_members import add_service_errors
from accounts.permissions import is_operator
from accounts.selectors import memberships_for_user, personal_token_for_user, personal_tokens_of_user
from accounts.services import IssuedToken, personal_token_create, personal_token_revoke

LIFETIMES = [(7, "7 days"), (30, "30 days"), (90, "90 days"), (180, "180 days"), (365, "1 year")]
MAX_LISTED = 200


class TokenCreateForm(forms.Form):
    name = forms.CharField(
        label="Name", max_length=200, help_text="What uses it, e.g. “CI deploy” or “finance export”."
    )
    lifetime = forms.TypedChoiceField(
        label="Expires in",
        choices=LIFETIMES,
        coerce=int,
        initial=90,
        help_text="Every token expires; create a new one before then.",
    )


def _page(
    request: HttpRequest,
    *,
    form: TokenCreateForm | None = None,
    issued: IssuedToken | None = None,
    status: int = 200,
) -> HttpResponse:
    listed = list(personal_tokens_of_user(request.user)[: MAX_LISTED + 1])
    context: dict[str, Any] = {
        "tokens": listed[:MAX_LISTED],
        "more": len(listed) > MAX_LISTED,
        "form": form or TokenCreateForm(),
        "issued": issued,
        "memberships": memberships_for_user(request.user),
        "operator": is_operator(request.user),
        "api_url": request.build_absolute_uri("/api/v1/"),
    }
    return render(request, "accounts/tokens.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _page(request)
    form = TokenCreateForm(request.POST)
    if form.is_valid():
        try:
            issued = personal_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=timezone.now() + timedelta(days=form.cleaned_data["lifetime"]),
                actor=Actor.console(request.user),
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            # The secret is on this response only (never_cache: no-store), never stored or redirected.
            return _page(request, issued=issued)
    return _page(request, form=form, status=400)


@never_cache
@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: str) -> HttpResponse:
    token = personal_token_for_user(request.user, token_id)
    if token.revoked_at is None:
        personal_token_revoke(token=token, actor=Actor.console(request.user))
        messages.success(
            request, f"Revoked the token “{token.name}” (thp_{token.prefix}…): it stops working now."
        )
    return redirect("accounts:tokens")
