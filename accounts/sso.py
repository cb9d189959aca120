"""Single sign-on with OpenID Connect: the identity provider's endpoints and keys, and the
authentication backend that turns a callback's code into a signed-in user.

Built on mozilla-django-oidc (its views keep `state`, `nonce` and the PKCE verifier in the session;
its backend exchanges the code). What it leaves to us is here:

- its settings come from TOLLHOUSE_OIDC_* (config/sso.py) and the provider's discovery document
  (`<issuer>/.well-known/openid-configuration`, read on first use and kept for an hour), never from
  OIDC_* Django settings;
- the id_token is verified in full: RS256 only, signed by a key of the provider's JWKS (read again
  once when a token names a key not seen yet), `iss` = the issuer, `aud` = our client id (and `azp`
  when there are several audiences), `exp`/`iat` present and valid, `nonce` = the one this browser
  was sent with; the library itself checks neither the audience nor the issuer;
- the redirect URI is TOLLHOUSE_PUBLIC_URL + /oidc/callback/, never built from the request's Host;
- anything that goes wrong is an `SsoError`: one sentence for the person (the callback shows it)
  and one for the log; neither ever holds a token, a code or the client secret.

Who the person becomes (the account, the operator role, tenant memberships) is accounts/sso_sync.py.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import lru_cache
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from config.sso import REQUIRED_ENDPOINTS, OidcSettings, provider_url

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"
METADATA_SECONDS = 3600  # how long a discovery document or a JWKS is trusted
CLOCK_SKEW_SECONDS = 30  # `exp`, `iat`, `nbf` leeway between our clock and the provider's


class SsoError(Exception):
    """A sign-in that did not happen. `message` is shown to the person; `reason` is logged (both free
    of secrets); `status` is the page's HTTP status."""

    def __init__(self, message: str, *, reason: str = "", status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or message
        self.status = status


def sso_settings() -> OidcSettings | None:
    """Single sign-on's settings, or None when it is off."""
    config: OidcSettings | None = getattr(settings, "TOLLHOUSE_OIDC", None)
    return config


def callback_url() -> str:
    """The redirect URI to register at the identity provider."""
    return settings.TOLLHOUSE_PUBLIC_URL + reverse("accounts:oidc_callback")


# --- the provider: discovery and keys ------------------------------------------------------------------


def _get_json(url: str, *, what: str, timeout: float) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": "application/json"})
    except requests.RequestException as exc:
        raise SsoError(
            "The identity provider could not be reached. Try again in a moment.",
            reason=f"{what} {url}: {type(exc).__name__}",
            status=503,
        ) from None
    if response.status_code != 200:
        raise SsoError(
            "The identity provider could not be reached. Try again in a moment.",
            reason=f"{what} {url} answered {response.status_code}",
            status=503,
        )
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise SsoError(
            "The identity provider sent something Tollhouse cannot read.",
            reason=f"{what} {url} is not a JSON object",
            status=502,
        )
    return document


class ProviderCache:
    """The provider's endpoints and signing keys, per process, each kept METADATA_SECONDS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, tuple[float, dict[str, Any]]] = {}
        self._jwks: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._endpoints.clear()
            self._jwks.clear()

    def endpoints(self, config: OidcSettings) -> dict[str, Any]:
        """authorization_endpoint, token_endpoint, jwks_uri, userinfo_endpoint (if any), and
        whether the token endpoint takes the client's secret by HTTP Basic (`token_auth_basic`)."""
        if not config.needs_discovery:
            return {"token_auth_basic": True, **config.endpoints}
        key = config.discovery_url
        with self._lock:
            cached = self._endpoints.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        document = _get_json(config.discovery_url, what="discovery", timeout=config.timeout)
        endpoints = self._read_discovery(config, document)
        with self._lock:
            self._endpoints[key] = (time.monotonic() + METADATA_SECONDS, endpoints)
        return endpoints

    @staticmethod
    def _read_discovery(config: OidcSettings, document: dict[str, Any]) -> dict[str, Any]:
        def broken(why: str) -> SsoError:
            return SsoError(
                "Single sign-on is misconfigured: the identity provider's discovery document does not "
                "fit. An operator has to look at the server's log.",
                reason=f"discovery {config.discovery_url}: {why}",
                status=502,
            )

        if document.get("issuer") != config.issuer:
            raise broken(
                f"its issuer is {str(document.get('issuer'))[:200]!r}, not TOLLHOUSE_OIDC_ISSUER "
                f"{config.issuer!r} (they must be equal, character for character)"
            )
        algorithms = document.get("id_token_signing_alg_values_supported")
        if isinstance(algorithms, list) and ALGORITHM not in algorithms:
            raise broken(f"it does not sign id_tokens with {ALGORITHM}")
        endpoints: dict[str, Any] = {}
        for name in (*REQUIRED_ENDPOINTS, "userinfo_endpoint"):
            value = config.endpoints.get(name) or document.get(name)
            if value is None and name == "userinfo_endpoint":
                continue
            if not provider_url(value):
                raise broken(f"{name} is missing or not an https URL")
            endpoints[name] = value
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        endpoints["token_auth_basic"] = "client_secret_basic" in methods
        if not endpoints["token_auth_basic"] and "client_secret_post" not in methods:
            raise broken("its token endpoint takes neither client_secret_basic nor client_secret_post")
        return endpoints

    def jwks(self, config: OidcSettings, *, refresh: bool = False) -> list[dict[str, Any]]:
        url = self.endpoints(config)["jwks_uri"]
        with self._lock:
            cached = self._jwks.get(url)
        now = time.monotonic()
        # Read again for a `kid` not seen yet (the provider rotated its keys). The id_token comes
        # from the provider's token endpoint, never from the browser, so a stranger cannot make
        # this refetch happen at will.
        if cached is not None and cached[0] > now and not refresh:
            return cached[1]
        document = _get_json(url, what="JWKS", timeout=config.timeout)
        keys = [key for key in document.get("keys") or [] if isinstance(key, dict)]
        with self._lock:
            self._jwks[url] = (now + METADATA_SECONDS, keys)
        return keys


@lru_cache(maxsize=1)
def provider_cache() -> ProviderCache:
    """The process's one cache of provider metadata."""
    return ProviderCache()


# --- the library's settings -------------------------------------------------------------------------


def library_setting(config: OidcSettings, name: str, *default: Any) -> Any:
    """What mozilla-django-oidc reads with `get_settings(name)`, from TOLLHOUSE_OIDC_* and discovery."""
    fixed = {
        "OIDC_RP_CLIENT_ID": config.client_id,
        "OIDC_RP_CLIENT_SECRET": config.client_secret,
        "OIDC_RP_SCOPES": config.scopes,
        "OIDC_RP_SIGN_ALGO": ALGORITHM,
        "OIDC_RP_IDP_SIGN_KEY": None,
        "OIDC_USE_NONCE": True,
        "OIDC_USE_PKCE": True,
        "OIDC_PKCE_CODE_CHALLENGE_METHOD": "S256",
        "OIDC_AUTHENTICATION_CALLBACK_URL": "accounts:oidc_callback",
        "OIDC_TIMEOUT": config.timeout,
        "OIDC_VERIFY_SSL": True,
        "OIDC_PROXY": None,
        "OIDC_STORE_ACCESS_TOKEN": False,
        "OIDC_STORE_ID_TOKEN": False,
        "OIDC_ALLOW_UNSECURED_JWT": False,
        "OIDC_CREATE_USER": True,
        "OIDC_AUTH_REQUEST_EXTRA_PARAMS": {"redirect_uri": callback_url()},
        "LOGIN_REDIRECT_URL": settings.LOGIN_REDIRECT_URL,
        "LOGOUT_REDIRECT_URL": settings.LOGOUT_REDIRECT_URL,
    }
    if name in fixed:
        return fixed[name]
    endpoint = {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
        "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
        "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
        "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    }.get(name)
    if endpoint is not None:
        return provider_cache().endpoints(config).get(endpoint)
    if name == "OIDC_TOKEN_USE_BASIC_AUTH":
        return provider_cache().endpoints(config)["token_auth_basic"]
    return getattr(settings, name, *default)


# --- the backend ------------------------------------------------------------------------------------


class OidcBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """Signs in through the callback only (it alone passes a `nonce`), and only while single sign-on
    is on. Django builds every backend for each password sign-in as well, so nothing is read from the
    provider until a callback arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.UserModel = get_user_model()
        self.config: OidcSettings | None = None

    def get_settings(self, attr: str, *default: Any) -> Any:
        assert self.config is not None
        return library_setting(self.config, attr, *default)

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        config = sso_settings()
        if config is None or request is None or "nonce" not in kwargs:
            return None
        self.config = config
        self.request = request
        state, code = request.GET.get("state"), request.GET.get("code")
        if not state or not code:
            return None
        self.OIDC_OP_TOKEN_ENDPOINT = self.get_settings("OIDC_OP_TOKEN_ENDPOINT")
        self.OIDC_OP_USER_ENDPOINT = self.get_settings("OIDC_OP_USER_ENDPOINT")
        self.OIDC_OP_JWKS_ENDPOINT = self.get_settings("OIDC_OP_JWKS_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = config.client_id
        self.OIDC_RP_CLIENT_SECRET = config.client_secret
        self.OIDC_RP_SIGN_ALGO = ALGORITHM
        self.OIDC_RP_IDP_SIGN_KEY = None

        payload = {
            "client_id": config.client_id,
            "client_secret": config.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback_url(),
        }
        if kwargs.get("code_verifier") is not None:
            payload["code_verifier"] = kwargs["code_verifier"]
        token_info = self._token(payload)
        id_token = token_info.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SsoError(
                "The identity provider did not send an identity token.",
                reason="token endpoint answer has no id_token",
                status=502,
            )
        try:
            claims = self.verify_token(id_token, nonce=kwargs["nonce"])
        except SuspiciousOperation:  # the library's nonce check
            raise SsoError(
                "This sign-in was not the one this browser started (nonce mismatch). Start again.",
                reason="id_token nonce does not match the session's",
            ) from None
        access_token = token_info.get("access_token")
        if self.OIDC_OP_USER_ENDPOINT and isinstance(access_token, str) and access_token:
            claims = {**self._userinfo(access_token, claims), **claims}
        from accounts.sso_sync import sso_sign_in

        return sso_sign_in(config=config, claims=claims)

    def get_user(self, user_id: Any) -> Any:
        # With single sign-on turned off, its sessions end too.
        if sso_settings() is None:
            return None
        return super().get_user(user_id)

    # The library's steps, with their failures turned into SsoError.

    def _token(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.get_token(payload)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise SsoError(
                "The identity provider refused this sign-in's code. Start again.",
                reason=f"token endpoint answered {status}",
            ) from None
        except (requests.RequestException, ValueError) as exc:
            raise SsoError(
                "The identity provider could not be reached. Try again in a moment.",
                reason=f"token endpoint: {type(exc).__name__}",
                status=503,
            ) from None
        if not isinstance(answer, dict):
            raise SsoError(
                "The identity provider sent something Tollhouse cannot read.",
                reason="token endpoint answer is not a JSON object",
                status=502,
            )
        return answer

    def _userinfo(self, access_token: str, claims: dict[str, Any]) -> dict[str, Any]:
        try:
            info = self.get_userinfo(access_token, None, claims)
        except (requests.RequestException, ValueError) as exc:
            raise SsoError(
                "The identity provider could not be reached. Try again in a moment.",
                reason=f"userinfo endpoint: {type(exc).__name__}",
                status=503,
            ) from None
        if not isinstance(info, dict) or info.get("sub") != claims.get("sub"):
            # OpenID Connect Core 5.3.2: a userinfo answer about someone else must not be used.
            raise SsoError(
                "The identity provider's answers disagree about who you are.",
                reason="userinfo `sub` differs from the id_token's",
            )
        return info

    def retrieve_matching_jwk(self, token: str) -> Any:
        """The provider's key that signed `token`: by its `kid` (or the one RSA signing key when the
        token names none). An unknown `kid` re-reads the JWKS once (the provider rotated its keys)."""
        assert self.config is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise SsoError(
                "The identity provider's token could not be read.", reason="id_token is not a JWS"
            ) from None
        if header.get("alg") != ALGORITHM:
            raise SsoError(
                "The identity provider's token is not signed the way Tollhouse expects.",
                reason=f"id_token alg is {str(header.get('alg'))[:20]!r}, not {ALGORITHM}",
            )
        kid = header.get("kid")
        for refresh in (False, True):
            candidates = [
                key
                for key in provider_cache().jwks(self.config, refresh=refresh)
                if key.get("kty") == "RSA"
                and key.get("use", "sig") == "sig"
                and key.get("alg", ALGORITHM) == ALGORITHM
                and (kid is None or key.get("kid") == kid)
            ]
            if len(candidates) == 1 or (kid is not None and candidates):
                try:
                    return jwt.PyJWK(candidates[0], algorithm=ALGORITHM)
                except jwt.PyJWKError:
                    raise SsoError(
                        "The identity provider publishes a signing key Tollhouse cannot read.",
                        reason=f"JWKS key {str(kid)[:40]!r} is malformed",
                        status=502,
                    ) from None
        raise SsoError(
            "The identity provider's token is signed with a key it does not publish.",
            reason=f"no RS256 key {str(kid)[:40]!r} in the JWKS",
        )

    def get_payload_data(self, token: str, key: Any) -> dict[str, Any]:
        """The id_token's claims, once its signature, issuer, audience and times are verified."""
        assert self.config is not None
        config = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=config.client_id,
                issuer=config.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "iat"], "strict_aud": False},
            )
        except jwt.InvalidSignatureError:
            raise SsoError(
                "The identity provider's token has a bad signature: it was refused.",
                reason="id_token signature does not verify",
            ) from None
        except jwt.InvalidAudienceError:
            raise SsoError(
                "The identity provider's token was issued for another application: it was refused.",
                reason="id_token audience is not TOLLHOUSE_OIDC_CLIENT_ID",
            ) from None
        except jwt.InvalidIssuerError:
            raise SsoError(
                "The identity provider's token comes from another issuer: it was refused.",
                reason="id_token issuer is not TOLLHOUSE_OIDC_ISSUER",
            ) from None
        except jwt.ExpiredSignatureError:
            raise SsoError(
                "The identity provider's token had expired: start again (and check this server's clock).",
                reason="id_token expired",
            ) from None
        except jwt.InvalidTokenError as exc:
            raise SsoError(
                "The identity provider's token was refused.",
                reason=f"id_token invalid: {type(exc).__name__}",
            ) from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != config.client_id:
            raise SsoError(
                "The identity provider's token was issued for another application: it was refused.",
                reason="id_token has several audiences and its azp is not TOLLHOUSE_OIDC_CLIENT_ID",
            )
        if not isinstance(claims["sub"], str) or not claims["sub"] or len(claims["sub"]) > 255:
            raise SsoError("The identity provider's token was refused.", reason="id_token sub is not usable")
        return claims
