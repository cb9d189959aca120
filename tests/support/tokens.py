"""End-user tokens (JWTs) signed in tests as a tenant's backend would sign them, and keys to sign
with (generated once per test process: RSA key generation takes a while)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import time
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://auth.acme.test"
SECRET = "acme-shared-secret-0123456789-abcdefghij"  # >= 32 bytes


@functools.cache
def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(curve: str = "P-256") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1() if curve == "P-256" else ec.SECP384R1())


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def private_pem(private_key: Any) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def claims(
    *, iss: str = ISSUER, sub: str = "end-user-1", lifetime: int = 300, **extra: Any
) -> dict[str, Any]:
    """A token's claims; pass a claim as None to leave it out."""
    now = int(time.time())
    payload = {"iss": iss, "sub": sub, "iat": now, "exp": now + lifetime, **extra}
    return {name: value for name, value in payload.items() if value is not None}


def mint(key: Any = SECRET, algorithm: str = "HS256", *, kid: str | None = None, **claim_args: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**claim_args), key, algorithm=algorithm, headers=headers)


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hs256(payload: dict[str, Any], hmac_key: bytes) -> str:
    """An HS256 token made by hand (PyJWT refuses to use a PEM key as an HMAC secret): the classic
    algorithm-confusion attack signs with the tenant's *public* RSA key as the shared secret."""
    signing_input = (
        _segment(orjson.dumps({"alg": "HS256", "typ": "JWT"})) + "." + _segment(orjson.dumps(payload))
    )
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _segment(signature)


def raw_token(header: dict[str, Any], payload: bytes, signature: bytes = b"sig") -> str:
    return f"{_segment(orjson.dumps(header))}.{_segment(payload)}.{_segment(signature)}"
