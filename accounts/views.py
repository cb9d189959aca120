"""Console pages of accounts: sign-in, password change and reset, the landing page.

Tenant pages (keys, members, signing keys, audit) are in accounts/views_*.py; each goes through
`@tenant_page(action)` (accounts/access.py).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy

from accounts.context import ops_home_url, tenant_home_url
from accounts.forms import SignInForm
from accounts.permissions import is_operator
from accounts.selectors import memberships_for_user
from accounts.sso import sso_settings
from accounts.throttle import login_throttled


class LoginView(auth_views.LoginView):
    """The sign-in page; with single sign-on on, it also offers "Sign in with <provider>"."""

    template_name = "accounts/login.html"
    authentication_form = SignInForm  # type: ignore[assignment]
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        config = sso_settings()
        if config is not None:
            url = reverse("accounts:oidc_authenticate")
            next_url = context.get("next")
            context["sso"] = {
                "name": config.name,
                "url": f"{url}?{urlencode({'next': next_url})}" if next_url else url,
            }
        return context


login = login_throttled(LoginView.as_view())  # type: ignore[arg-type]
logout = auth_views.LogoutView.as_view()  # POST only (Django 5)

password_change = auth_views.PasswordChangeView.as_view(
    template_name="accounts/password_change.html", success_url=reverse_lazy("accounts:password_change_done")
)
password_change_done = auth_views.PasswordChangeDoneView.as_view(
    template_name="accounts/password_change_done.html"
)


class PasswordResetView(auth_views.PasswordResetView):
    """Links in the email start with TOLLHOUSE_PUBLIC_URL, never with the request's Host header
    (which a stranger chooses: a reset link pointing at their server would hand them the token)."""

    def form_valid(self, form):  # type: ignore[no-untyped-def]
        self.extra_email_context = {"public_url": settings.TOLLHOUSE_PUBLIC_URL}
        return super().form_valid(form)


password_reset = PasswordResetView.as_view(
    template_name="accounts/password_reset.html",
    email_template_name="accounts/email/password_reset.txt",
    html_email_template_name="accounts/email/password_reset.html",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password_reset_done"),
)
password_reset_done = auth_views.PasswordResetDoneView.as_view(
    template_name="accounts/password_reset_done.html"
)
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html",
    success_url=reverse_lazy("accounts:password_reset_complete"),
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """`/`: the user's first tenant; the operator console for an operator in no tenant; the admin for
    other staff in no tenant; else a page saying so."""
    first = memberships_for_user(request.user).first()
    if first is not None:
        return redirect(tenant_home_url(first.tenant.slug))
    if is_operator(request.user) and (ops := ops_home_url()) is not None:
        return redirect(ops)
    if request.user.is_staff:
        return redirect("admin:index")
    return render(request, "accounts/no_tenant.html")
