"""Who calls the management API: `Authorization: Bearer thp_...`, a personal access token.

One failure answer (401 in the API's error shape): `invalid_token` for anything that is not a
token we know with its right secret (so a stranger learns nothing about which prefixes exist);
only the holder of a real secret is told `token_expired` or `token_revoked`. Failed checks are
counted per client IP (config.clientip, the gateway's rule) and refused with 429 beyond
TOLLHOUSE_API_AUTH_FAILURE_RATE; each token's calls are limited to TOLLHOUSE_API_RATE (429 with
Retry-After). `last_used_at` is written at most once a minute per token.
"""

from __future__ import annotations

from typing import Any, NoReturn

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts import tokens
from accounts.api.errors import RateLimited, Unauthenticated
from accounts.models import PersonalAccessToken
from accounts.selectors import personal_token_by_prefix
from accounts.services import personal_token_touch
from accounts.throttle import api_auth_failure_throttle, api_token_throttle
from config import clientip

REALM = 'Bearer realm="tollhouse"'
MISSING = "Send a personal access token: `Authorization: Bearer thp_...` (create one at /account/tokens/)."
INVALID = "The token is not valid."


class TokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, PersonalAccessToken]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not isinstance(header, str) or not header.strip():
            raise Unauthenticated(MISSING, code="not_authenticated", headers={"WWW-Authenticate": REALM})
        ip = clientip.from_meta(request.META) or "-"
        failures = api_auth_failure_throttle()
        if failures.failures(ip) >= failures.limit:
            raise RateLimited(
                "Too many failed token checks from your address. Try again later.",
                code="too_many_failures",
                headers={"Retry-After": str(failures.retry_after())},
            )
        token = self._check(header, ip)
        calls = api_token_throttle()
        if calls.failed(token.prefix) > calls.limit:
            raise RateLimited(
                f"This token made more than {calls.limit} calls in {calls.window} s. Try again later.",
                headers={"Retry-After": str(calls.retry_after())},
            )
        personal_token_touch(token=token)
        return token.user, token

    def _check(self, header: str, ip: str) -> PersonalAccessToken:
        scheme, _, raw = header.strip().partition(" ")
        parsed = tokens.parse(raw.strip()) if scheme.lower() == "bearer" else None
        token = personal_token_by_prefix(parsed.prefix) if parsed is not None else None
        if parsed is None or token is None or not tokens.matches(parsed.secret, token.digest):
            self._fail(ip, INVALID, "invalid_token")
        if token.revoked_at is not None:
            self._fail(ip, "The token was revoked.", "token_revoked")
        if token.expires_at <= timezone.now():
            self._fail(ip, "The token has expired: create a new one.", "token_expired")
        if not token.user.is_active:
            self._fail(ip, INVALID, "invalid_token")
        return token

    def _fail(self, ip: str, message: str, code: str) -> NoReturn:
        api_auth_failure_throttle().failed(ip)
        raise Unauthenticated(message, code=code, headers={"WWW-Authenticate": REALM})

    def authenticate_header(self, request: Request) -> str:
        return REALM
