"""The public page an invitation email links to, /invitations/<token>/ (accounts/members.py).

Someone signed in with the invited address joins with one button; someone without an account sets
a password (and a name) and is signed in as the new member; someone whose address already has an
account is asked to sign in first. An expired, revoked, used or unknown link says which, and nothing
changes. Failed attempts are throttled per client IP (TOLLHOUSE_INVITATION_RATE), so tokens cannot be
guessed at speed; the page is never cached, and its forms carry the token in their body, not in the
URL they post to."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts import members as services
from accounts.context import tenant_home_url
from accounts.forms_members import AcceptForm, add_service_errors
from accounts.models import Invitation
from accounts.throttle import invitation_throttled


def _article(role: str) -> str:
    return "an" if role in ("owner", "admin") else "a"


STATUS = {"invalid": 404, "used": 410, "revoked": 410, "expired": 410}


@never_cache
@require_GET
@invitation_throttled
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the email (GET)."""
    return _accept(request, token)


@never_cache
@require_POST
@invitation_throttled
def invitation_accept_post(request: HttpRequest) -> HttpResponse:
    """The page's forms post here with the token in their body, so that the token is in no URL a
    POST is logged under (a CSRF refusal, for one, logs the path)."""
    token = request.POST.get("token", "")
    return _accept(request, token if isinstance(token, str) else "")


def _accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.invitation_for_token(token)
    reason = services.invitation_unusable_reason(invitation)
    if reason is not None:
        return _render(request, {"reason": reason.message}, status=STATUS.get(str(reason.code), 400))
    assert invitation is not None
    user = request.user if request.user.is_authenticated else None
    context: dict[str, object] = {"invitation": invitation, "tenant": invitation.tenant, "token": token}
    if user is not None:
        if (user.email or "").strip().lower() != invitation.email:
            context["wrong_account"] = user.email or user.get_username()
            return _render(request, context, status=403 if request.method == "POST" else 200)
        if request.method == "POST":
            try:
                services.invitation_accept(token=token, user=user)
            except ValidationError as exc:
                return _render(request, {**context, "reason": exc.messages[0]}, status=409)
            return _joined(request, invitation)
        return _render(request, {**context, "join": True})
    if get_user_model()._default_manager.filter(email__iexact=invitation.email).exists():
        link = reverse("accounts:invitation_accept", kwargs={"token": token})
        login_url = f"{reverse('accounts:login')}?{urlencode({'next': link})}"
        return _render(
            request, {**context, "sign_in_url": login_url}, status=409 if request.method == "POST" else 200
        )
    form = AcceptForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            membership = services.invitation_accept(
                token=token, password=form.cleaned_data["password1"], name=form.cleaned_data["name"]
            )
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                exc = ValidationError(
                    {
                        ("password1" if field == "password" else field): errors
                        for field, errors in exc.message_dict.items()
                    }
                )
            add_service_errors(form, exc)
        else:
            login(request, membership.user, backend=settings.AUTHENTICATION_BACKENDS[0])
            return _joined(request, invitation)
    status = 400 if request.method == "POST" else 200
    return _render(request, {**context, "form": form}, status=status)


def _render(request: HttpRequest, context: dict[str, object], *, status: int = 200) -> HttpResponse:
    # The site's Referrer-Policy (same-origin) keeps the token's URL from other sites.
    return render(request, "accounts/invitation_accept.html", context, status=status)


def _joined(request: HttpRequest, invitation: Invitation) -> HttpResponse:
    tenant = invitation.tenant
    messages.success(
        request, f"Welcome to {tenant.name}: you are {_article(invitation.role)} {invitation.role} here."
    )
    return redirect(tenant_home_url(tenant.slug))
