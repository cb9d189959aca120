"""Single sign-on pages: /oidc/authenticate/ (off to the identity provider) and /oidc/callback/
(back from it, signed in or told why not). Both answer 404 while single sign-on is off.

mozilla-django-oidc's views do the protocol (state, nonce and the PKCE verifier kept in the session,
each usable once); these subclasses read their settings from TOLLHOUSE_OIDC_* (accounts/sso.py)
and turn every failure into a page that says what happened, with the status it deserves.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.generic import View
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.sso import SsoError, library_setting, sso_settings
from accounts.throttle import sso_throttled
from config.sso import OidcSettings

logger = logging.getLogger(__name__)


def refused(request: HttpRequest, error: SsoError) -> HttpResponse:
    logger.warning("sso: sign-in refused: %s", error.reason)
    return render(request, "accounts/sso_refused.html", {"message": error.message}, status=error.status)


class _Settings:
    config: OidcSettings | None = None

    def get_settings(self, attr: str, *default: Any) -> Any:
        assert self.config is not None
        return library_setting(self.config, attr, *default)


class SsoAuthenticateView(_Settings, OIDCAuthenticationRequestView):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        # The library reads the provider's endpoints here; this reads them in get(), where a
        # provider that cannot be reached becomes a page rather than a 500.
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        response: HttpResponse = super().get(request)
        return response


class SsoCallbackView(_Settings, OIDCAuthenticationCallbackView):  # type: ignore[misc]
    def get(self, request: HttpRequest) -> HttpResponse:
        states = request.session.get("oidc_states")
        if request.GET.get("error") and request.GET.get("state") not in (states or {}):
            # The library signs the visitor out on any `?error=`: only for a sign-in this browser
            # started, or any page could sign a visitor out by linking here.
            return self.login_failure()
        try:
            response: HttpResponse = super().get(request)
        except SuspiciousOperation:  # the library: a `state` this session never issued (or used up)
            return refused(
                request,
                SsoError(
                    "This sign-in was not started in this browser, or was already used. Start again "
                    "from the sign-in page.",
                    reason="callback state is not one this session issued",
                    status=400,
                ),
            )
        return response

    def login_failure(self) -> HttpResponse:
        error = self.request.GET.get("error", "")
        if error:
            described = "".join(ch for ch in error[:60] if ch.isalnum() or ch in "_-.")
            failure = SsoError(
                f"The identity provider did not sign you in ({described}).",
                reason=f"the provider answered error={described}",
            )
        elif "oidc_states" not in self.request.session:
            failure = SsoError(
                "This sign-in was not started in this browser (its session is gone). Start again from "
                "the sign-in page.",
                reason="callback without a session",
                status=400,
            )
        else:
            failure = SsoError(
                "This account cannot sign in here: ask an operator.",
                reason="the backend signed nobody in",
            )
        return refused(self.request, failure)


def _sso_view(view_class: type[_Settings]) -> Any:
    def view(request: HttpRequest) -> HttpResponse:
        config = sso_settings()
        if config is None:
            raise Http404("Single sign-on is not configured.")
        try:
            response: HttpResponse = view_class.as_view(config=config)(request)  # type: ignore[attr-defined]
        except SsoError as error:
            return refused(request, error)
        return response

    return never_cache(view)


oidc_authenticate = _sso_view(SsoAuthenticateView)
oidc_callback = sso_throttled(_sso_view(SsoCallbackView))
