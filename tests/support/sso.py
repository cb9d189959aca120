"""Single sign-on in tests: configure it against the loopback provider (tests/support/oidc_provider.py)
through the real TOLLHOUSE_OIDC_* parser, and walk a Django test client through the flow: our
/oidc/authenticate/, the provider's /authorize over HTTP, then our /oidc/callback/ (whose backend
calls the provider's token endpoint and JWKS over HTTP)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from config.env import EnvReader
from config.sso import OidcSettings, read_oidc
from tests.support.oidc_provider import OidcProvider


def oidc_settings(provider: OidcProvider, **extra: str) -> OidcSettings:
    """TOLLHOUSE_OIDC for `provider`, as settings.py reads it from these variables (plus `extra`:
    TENANTS_CLAIM="groups" sets TOLLHOUSE_OIDC_TENANTS_CLAIM)."""
    env = EnvReader(
        {
            "TOLLHOUSE_OIDC_ISSUER": provider.issuer,
            "TOLLHOUSE_OIDC_CLIENT_ID": provider.client_id,
            "TOLLHOUSE_OIDC_CLIENT_SECRET": provider.client_secret,
            **{f"TOLLHOUSE_OIDC_{name}": value for name, value in extra.items()},
        }
    )
    config = read_oidc(env)
    assert config is not None and not env.errors, env.errors
    return config


def start(client: Any, *, next_path: str = "") -> str:
    """Our /oidc/authenticate/: returns the provider URL it sends the browser to."""
    response = client.get("/oidc/authenticate/" + (f"?next={next_path}" if next_path else ""))
    assert response.status_code == 302, response.content[:500]
    return str(response["Location"])


def authorize(url: str) -> str:
    """The provider's /authorize, over HTTP: returns the callback path and query it redirects to."""
    answer = httpx.get(url, follow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    return f"{location.path}?{location.query}"


def sign_in(client: Any, *, next_path: str = "") -> Any:
    """The whole flow; returns our callback's response."""
    return client.get(authorize(start(client, next_path=next_path)))


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}
