"""A small OpenID Connect provider over real HTTP on loopback, for the single sign-on tests.

It serves discovery (`/.well-known/openid-configuration`), its JWKS (`/jwks`), `/authorize` (which
approves at once, as the configured person, and redirects back with a code), `/token` (client secret
by HTTP Basic or in the form, the code used once, the redirect URI and the PKCE verifier checked;
answers an RS256 id_token signed with a key generated when the provider starts) and `/userinfo`.

`provider.behaviour` decides what the next sign-in looks like: the person's claims, and faults —
`sign_with_wrong_key` (a key the JWKS does not hold, under the published `kid`), `audience`,
`issuer`, `expires_in` (negative: already expired), `nonce` (instead of the one asked for),
`state` (instead of the one asked for), `error` (the authorize endpoint refuses). Every id_token it
mints and its client secret are registered with tests.support.secrets, so a log line holding one
fails the run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.support.secrets import registry

CLIENT_ID = "tollhouse-console"
CLIENT_SECRET = registry.credential("oidc-client-secret-" + secrets.token_hex(12))
KID = "test-key-1"
_UNSET: Any = object()


@dataclass
class Behaviour:
    claims: dict[str, Any] = field(
        default_factory=lambda: {"sub": "user-1", "email": "sso.user@acme.test", "name": "Sso User"}
    )
    sign_with_wrong_key: bool = False
    audience: Any = _UNSET  # default: the client id
    issuer: Any = _UNSET  # default: the provider's own
    expires_in: int = 300
    nonce: Any = _UNSET  # default: the nonce of the authorize request
    state: Any = _UNSET  # default: the state of the authorize request
    error: str = ""


@dataclass
class Grant:
    claims: dict[str, Any]
    nonce: str | None
    redirect_uri: str
    code_challenge: str | None


class OidcProvider:
    def __init__(self, *, client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        # Generated when the provider starts: no key is shared with any other test or process.
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.wrong_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = KID
        self.behaviour = Behaviour()
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []  # "GET /authorize", "POST /token", ... in order
        self.token_requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="oidc-provider")

    # --- lifecycle -----------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def rotate_key(self) -> None:
        """A new signing key under a new `kid`; the JWKS publishes only the new one from now on."""
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"test-key-{secrets.token_hex(4)}"

    def reset(self) -> None:
        self.behaviour = Behaviour()
        self.grants.clear()
        self.access_tokens.clear()
        self.requests.clear()
        self.token_requests.clear()

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- documents -----------------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "userinfo_endpoint": self.issuer + "/userinfo",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        behaviour = self.behaviour
        claims = {
            **grant.claims,
            "iss": self.issuer if behaviour.issuer is _UNSET else behaviour.issuer,
            "aud": self.client_id if behaviour.audience is _UNSET else behaviour.audience,
            "iat": now - (max(0, -behaviour.expires_in) + 60 if behaviour.expires_in < 0 else 0),
            "exp": now + behaviour.expires_in,
        }
        nonce = grant.nonce if behaviour.nonce is _UNSET else behaviour.nonce
        if nonce is not None:
            claims["nonce"] = nonce
        key = self.wrong_key if behaviour.sign_with_wrong_key else self.key
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})
        return registry.jwt(token)

    # --- HTTP ----------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the test output is ours
                pass

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                provider.requests.append(f"GET {parts.path}")
                query = {name: values[0] for name, values in parse_qs(parts.query).items()}
                if parts.path == "/.well-known/openid-configuration":
                    self._send(200, provider.discovery())
                elif parts.path == "/jwks":
                    self._send(200, provider.jwks())
                elif parts.path == "/authorize":
                    self._authorize(query)
                elif parts.path == "/userinfo":
                    token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    claims = provider.access_tokens.get(token)
                    self._send(200, claims) if claims is not None else self._send(
                        401, {"error": "invalid_token"}
                    )
                else:
                    self._send(404, {"error": "not_found"})

            def _authorize(self, query: dict[str, str]) -> None:
                if query.get("client_id") != provider.client_id or query.get("response_type") != "code":
                    self._send(400, {"error": "invalid_request"})
                    return
                redirect_uri = query.get("redirect_uri", "")
                state = query.get("state") if provider.behaviour.state is _UNSET else provider.behaviour.state
                if provider.behaviour.error:
                    params = {"error": provider.behaviour.error, "state": state or ""}
                else:
                    code = registry.add(secrets.token_urlsafe(24), "OIDC authorization code")
                    provider.grants[code] = Grant(
                        claims=dict(provider.behaviour.claims),
                        nonce=query.get("nonce"),
                        redirect_uri=redirect_uri,
                        code_challenge=query.get("code_challenge"),
                    )
                    params = {"code": code, "state": state or ""}
                self._send(302, headers={"Location": f"{redirect_uri}?{urlencode(params)}"})

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                provider.requests.append(f"POST {parts.path}")
                if parts.path != "/token":
                    self._send(404, {"error": "not_found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                form = {
                    name: values[0] for name, values in parse_qs(self.rfile.read(length).decode()).items()
                }
                provider.token_requests.append({k: v for k, v in form.items() if k != "client_secret"})
                client_id, client_secret = form.get("client_id"), form.get("client_secret")
                basic = self.headers.get("Authorization", "")
                if basic.startswith("Basic "):
                    client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
                if client_id != provider.client_id or client_secret != provider.client_secret:
                    self._send(401, {"error": "invalid_client"})
                    return
                grant = provider.grants.pop(form.get("code", ""), None)  # a code works once
                if grant is None or form.get("grant_type") != "authorization_code":
                    self._send(400, {"error": "invalid_grant"})
                    return
                if form.get("redirect_uri") != grant.redirect_uri:
                    self._send(400, {"error": "invalid_grant", "error_description": "redirect_uri"})
                    return
                if grant.code_challenge is not None:
                    verifier = form.get("code_verifier", "")
                    digest = hashlib.sha256(verifier.encode()).digest()
                    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.code_challenge:
                        self._send(400, {"error": "invalid_grant", "error_description": "code_verifier"})
                        return
                access_token = registry.add(secrets.token_urlsafe(24), "OIDC access token")
                provider.access_tokens[access_token] = dict(grant.claims)
                self._send(
                    200,
                    {
                        "access_token": access_token,
                        "token_type": "Bearer",
                        "expires_in": 300,
                        "id_token": provider.id_token(grant),
                    },
                    headers={"Cache-Control": "no-store"},
                )

        return Handler
