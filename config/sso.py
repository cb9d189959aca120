"""Single sign-on settings: the TOLLHOUSE_OIDC_* variables read into one `OidcSettings`, or None.

Off by default: with no TOLLHOUSE_OIDC_ISSUER and no TOLLHOUSE_OIDC_CLIENT_ID nothing of single
sign-on exists (no button, /oidc/... answers 404). Like every other setting, a malformed value is
one sentence in `env.errors`, reported at start by the `tollhouse.E001` system check
(config/checks.py); the sign-in itself is in accounts/sso.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from config.env import EnvReader

PREFIX = "TOLLHOUSE_OIDC_"
# Endpoints that may be given instead of (or to override) what discovery says.
ENDPOINTS = {
    "authorization_endpoint": "TOLLHOUSE_OIDC_AUTHORIZATION_ENDPOINT",
    "token_endpoint": "TOLLHOUSE_OIDC_TOKEN_ENDPOINT",
    "jwks_uri": "TOLLHOUSE_OIDC_JWKS_URI",
    "userinfo_endpoint": "TOLLHOUSE_OIDC_USERINFO_ENDPOINT",
}
# Without these three, the provider's discovery document is read (and must have them).
REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    name: str  # shown on the button: "Sign in with <name>"
    endpoints: dict[str, str]  # explicit ones; the rest come from discovery
    email_claim: str
    name_claim: str
    operator_claim: str | None
    operator_values: frozenset[str]
    tenants_claim: str | None
    timeout: float

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def needs_discovery(self) -> bool:
        return not all(self.endpoints.get(name) for name in REQUIRED_ENDPOINTS)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def provider_url(value: object) -> bool:
    """Is `value` a URL the provider may be reached at: https, or plain http on loopback only (a
    provider the tests or a developer run locally)? Used for the settings and for what discovery says."""
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    host = parts.hostname or ""
    return bool(host) and (parts.scheme == "https" or (parts.scheme == "http" and _loopback(host)))


def _url(env: EnvReader, name: str) -> str | None:
    value = env.raw(name)
    if value is None:
        return None
    if provider_url(value):
        return value
    env.errors.append(f"{name} must be an https:// URL (plain http only on loopback), not {value[:200]!r}.")
    return None


def read_oidc(env: EnvReader) -> OidcSettings | None:
    """The TOLLHOUSE_OIDC_* variables of `env`, or None when single sign-on is not configured."""
    if env.raw(PREFIX + "ISSUER") is None and env.raw(PREFIX + "CLIENT_ID") is None:
        stray = sorted(name for name in env.environ if name.startswith(PREFIX) and env.raw(name) is not None)
        if stray:
            env.errors.append(
                f"{', '.join(stray)} set, but single sign-on is off: set TOLLHOUSE_OIDC_ISSUER and "
                "TOLLHOUSE_OIDC_CLIENT_ID (and TOLLHOUSE_OIDC_CLIENT_SECRET) to turn it on, or unset them."
            )
        return None
    errors_before = len(env.errors)
    issuer = _url(env, PREFIX + "ISSUER")
    if env.raw(PREFIX + "ISSUER") is None:
        env.errors.append(
            "TOLLHOUSE_OIDC_ISSUER must be set for single sign-on: the provider's issuer URL, as its "
            "tokens' `iss` claim says it (its discovery document is read from "
            "<issuer>/.well-known/openid-configuration)."
        )
    client_id = env.raw(PREFIX + "CLIENT_ID")
    client_secret = env.raw(PREFIX + "CLIENT_SECRET")
    for name, value in (("CLIENT_ID", client_id), ("CLIENT_SECRET", client_secret)):
        if value is None:
            env.errors.append(
                f"TOLLHOUSE_OIDC_{name} must be set for single sign-on: the client registered for "
                "Tollhouse at the identity provider."
            )
    scopes = " ".join(env.string(PREFIX + "SCOPES", "openid email profile").replace(",", " ").split())
    if "openid" not in scopes.split():
        env.errors.append(f"TOLLHOUSE_OIDC_SCOPES must include openid, not {scopes[:200]!r}.")
    endpoints = {key: url for key, name in ENDPOINTS.items() if (url := _url(env, name)) is not None}
    operator_claim = env.raw(PREFIX + "OPERATOR_CLAIM")
    operator_values = frozenset(env.strings(PREFIX + "OPERATOR_VALUES", []))
    if (operator_claim is None) != (not operator_values):
        env.errors.append(
            "TOLLHOUSE_OIDC_OPERATOR_CLAIM and TOLLHOUSE_OIDC_OPERATOR_VALUES go together: the claim "
            "(e.g. groups) and the values of it that make someone an operator (e.g. tollhouse-operators)."
        )
    timeout = env.seconds(PREFIX + "TIMEOUT_SECONDS", 10.0, maximum=120)
    if len(env.errors) > errors_before or issuer is None or client_id is None or client_secret is None:
        return None
    return OidcSettings(
        issuer=issuer,  # exactly as configured: tokens' `iss` must equal it
        client_id=client_id,
        client_secret=client_secret,
        scopes=scopes,
        name=env.string(PREFIX + "NAME", "SSO")[:60],
        endpoints=endpoints,
        email_claim=env.string(PREFIX + "EMAIL_CLAIM", "email"),
        name_claim=env.string(PREFIX + "NAME_CLAIM", "name"),
        operator_claim=operator_claim,
        operator_values=operator_values,
        tenants_claim=env.raw(PREFIX + "TENANTS_CLAIM"),
        timeout=timeout,
    )
