"""End-user tokens: a tenant's backend signs a short-lived JWT for one of its users, and the app sends
it as the bearer token instead of an API key. `sub` becomes the end user of every call made with it
(limits, budgets and usage per end user); optional claims narrow what the tenant allows, never widen.

A token is told apart from an API key by its shape: three base64url segments, the first a JSON
object, while an API key starts with `th-`. Its unverified `iss` (and `kid` header) picks the
issuer's active signing keys (accounts/signing.py), cached per process like API keys and dropped on
every broadcast config change (Runtime.clear_caches). The signature is checked with PyJWT by each
candidate key with `algorithms=[that key's algorithm]` only, and only keys whose algorithm is the
header's are candidates: so `alg: none` and the HS/RS swap (an HS256 token "signed" with the
tenant's RSA public key as the HMAC secret) can never verify.

Claims:
- required: `exp` (at most MAX_LIFETIME ahead: these tokens cannot be revoked one by one, only by
  deactivating their signing key), `sub` (1..200 printable characters), `iss`.
- checked when present: `nbf`, `iat` (not in the future), `aud` (must be or include AUDIENCE, so a
  token the tenant minted for another service of theirs is not accepted here).
- optional narrowing: `models` (a list of model names, each one the tenant's plan allows), `rpm`,
  `tpm`, `concurrency` (each at most the tenant's end-user limit, or its tenant limit when it has no
  end-user limit). A claim beyond that is refused with 403, not clamped: the signer has a bug the
  tenant should hear about.

Every bad token is a 401 with code `invalid_token` and a short reason, counted per client IP like a
bad API key. The token itself is never logged and never echoed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from dataclasses import dataclass, replace
from typing import Any

import jwt
import jwt.exceptions as jwt_errors
import orjson

from accounts import keys
from accounts.models import SigningKey, Tenant
from accounts.signing import active_signing_keys
from config.crypto import CredentialError
from config.hot import hot
from gateway import errors
from gateway.auth import KeyInfo, Limits, tenant_policy
from gateway.db import run_db
from gateway.dialects.fields import MAX_END_USER
from gateway.strangers import FailedAuthCounter
from gateway.ttlcache import TTLCache

logger = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8 * 1024
LEEWAY_SECONDS = 30  # clock skew between the tenant's signer and us
MAX_LIFETIME_SECONDS = 24 * 3600
AUDIENCE = "tollhouse"
REQUIRED_CLAIMS = ["exp", "sub", "iss"]
ALGORITHMS = frozenset(SigningKey.Algorithm.values)
LIMIT_CLAIMS = ("rpm", "tpm", "concurrency")
MAX_MODELS_CLAIM = 100
MAX_NAME = 200  # an issuer or a model name
MAX_LIMIT_CLAIM = 2**31 - 1
LABEL = "end-user token"

_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SHOWN_ALGORITHM = re.compile(r"[A-Za-z0-9]{1,16}")


class InvalidToken(Exception):
    """A token that proves nothing. The message is a short reason, safe to show: never the token."""


@dataclass(frozen=True)
class VerifyingKey:
    algorithm: str
    key_id: str
    material: Any  # HS256: the secret (bytes); RS256 / ES256: the loaded public key


@dataclass(frozen=True)
class Issuer:
    keys: tuple[VerifyingKey, ...]
    caller: KeyInfo  # the tenant's facts, which every token of this issuer starts from


@dataclass(frozen=True)
class _Unverified:
    algorithm: str
    key_id: str | None
    issuer: str


def _json_segment(segment: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def recognises(raw: str) -> bool:
    """Whether `raw` is meant as a JWT rather than an API key (a malformed one is still "meant")."""
    if raw.startswith(keys.KEY_TAG) or not _SHAPE.fullmatch(raw):
        return False
    if len(raw) > MAX_TOKEN_BYTES:
        return True  # refused as too large, without decoding it
    try:
        return isinstance(_json_segment(raw.partition(".")[0]), dict)
    except (ValueError, binascii.Error):
        return False


def _read_unverified(raw: str) -> _Unverified:
    """What picks the keys to verify with. Nothing here is trusted before the signature is checked."""
    if len(raw) > MAX_TOKEN_BYTES:
        raise InvalidToken(f"larger than {MAX_TOKEN_BYTES} bytes")
    header_segment, payload_segment, _ = raw.split(".")
    try:
        header, payload = _json_segment(header_segment), _json_segment(payload_segment)
    except (ValueError, binascii.Error):
        raise InvalidToken("malformed") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise InvalidToken("malformed")
    if "crit" in header or "b64" in header:
        raise InvalidToken("unsupported critical header")
    algorithm = header.get("alg")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        named = isinstance(algorithm, str) and _SHOWN_ALGORITHM.fullmatch(algorithm)
        which = f"algorithm {algorithm!r}" if named else "the token's algorithm"
        raise InvalidToken(f"{which} is not accepted (HS256, RS256 or ES256 only)")
    key_id = header.get("kid")
    if key_id is not None and not isinstance(key_id, str):
        raise InvalidToken("malformed 'kid' header")
    issuer = payload.get("iss")
    if issuer is None:
        raise InvalidToken("missing the 'iss' claim")
    if not isinstance(issuer, str) or not 0 < len(issuer) <= MAX_NAME:
        raise InvalidToken("unknown issuer")
    return _Unverified(algorithm=algorithm, key_id=key_id, issuer=issuer)


# -- the issuer's keys (cached) ---------------------------------------------------------------------


def _material(signing_key: SigningKey) -> Any:
    if signing_key.algorithm == SigningKey.Algorithm.HS256:
        return signing_key.get_secret().encode()
    return jwt.get_algorithm_by_name(signing_key.algorithm).prepare_key(signing_key.public_key)


def _read_issuer(name: str) -> Issuer | None:
    rows = active_signing_keys(issuer=name)
    if not rows:
        return None
    tenants = {row.tenant_id for row in rows}
    if len(tenants) > 1:
        # The services refuse this; a row written around them fails closed.
        logger.error(
            "issuer %r has active signing keys of %d tenants: its end-user tokens are refused",
            name,
            len(tenants),
        )
        return None
    verifying = []
    for row in rows:
        try:
            verifying.append(VerifyingKey(row.algorithm, row.key_id, _material(row)))
        except (CredentialError, jwt_errors.InvalidKeyError, ValueError, TypeError):
            logger.error("signing key %d of issuer %r cannot be loaded; it is skipped", row.id, name)
    tenant = rows[0].tenant
    plan_models = tenant.plan.allowed_models if tenant.plan is not None else []
    policy = tenant_policy(tenant, api_key_id=None)
    caller = KeyInfo(
        id=None,
        tenant_id=tenant.id,
        digest="",
        active=True,
        tenant_active=tenant.status == Tenant.Status.ACTIVE,
        expires_at=None,  # `exp` is checked with the signature, on every call
        allowed_models=frozenset(plan_models) if plan_models else None,
        allowed_networks=(),
        ip_restricted=False,
        label=LABEL,
        **policy,  # type: ignore[arg-type]
    )
    return Issuer(keys=tuple(verifying), caller=caller)


async def _load_issuer(name: str) -> Issuer | None:
    return await run_db(lambda: _read_issuer(name))


# -- verification -----------------------------------------------------------------------------------


def _reason(exc: jwt_errors.InvalidTokenError) -> str:
    if isinstance(exc, jwt_errors.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt_errors.ImmatureSignatureError):
        return "not valid yet"
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return f"missing the {exc.claim!r} claim"
    if isinstance(exc, jwt_errors.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt_errors.InvalidSubjectError):
        return "'sub' must be a string"
    if isinstance(exc, jwt_errors.InvalidIssuedAtError):
        return "'iat' must be a number"
    if isinstance(exc, jwt_errors.InvalidAlgorithmError):
        return "algorithm not accepted"
    return "malformed"


def _verify(raw: str, token: _Unverified, issuer: Issuer) -> dict[str, Any]:
    candidates = [key for key in issuer.keys if key.algorithm == token.algorithm]
    if token.key_id is not None:
        # A key registered with this `kid`, else the keys registered without one.
        candidates = [key for key in candidates if key.key_id == token.key_id] or [
            key for key in candidates if not key.key_id
        ]
    if not candidates:
        which = " with this 'kid'" if token.key_id is not None else ""
        raise InvalidToken(f"the issuer has no active {token.algorithm} signing key{which}")
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                raw,
                key.material,
                algorithms=[key.algorithm],
                issuer=token.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt_errors.InvalidSignatureError:
            continue  # maybe the next active key (rotation)
        except jwt_errors.InvalidTokenError as exc:
            raise InvalidToken(_reason(exc)) from None
        _check_claims(claims)
        return claims
    raise InvalidToken("bad signature")


def _check_claims(claims: dict[str, Any]) -> None:
    """What PyJWT does not check, on a token whose signature verified."""
    if int(claims["exp"]) > time.time() + MAX_LIFETIME_SECONDS + LEEWAY_SECONDS:
        raise InvalidToken(f"'exp' is more than {MAX_LIFETIME_SECONDS // 3600} hours ahead")
    sub = claims["sub"]
    if not (isinstance(sub, str) and 0 < len(sub) <= MAX_END_USER and sub.isprintable()):
        raise InvalidToken(f"'sub' must be 1 to {MAX_END_USER} printable characters")
    audience = claims.get("aud")
    if audience is not None and not (
        audience == AUDIENCE or (isinstance(audience, list) and AUDIENCE in audience)
    ):
        raise InvalidToken(f"'aud' must be {AUDIENCE!r} or include it")
    models = claims.get("models")
    if models is not None and not (
        isinstance(models, list)
        and 0 < len(models) <= MAX_MODELS_CLAIM
        and all(isinstance(m, str) and 0 < len(m) <= MAX_NAME and m.isprintable() for m in models)
    ):
        raise InvalidToken(f"'models' must be a list of 1 to {MAX_MODELS_CLAIM} model names")
    for name in LIMIT_CLAIMS:
        value = claims.get(name)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_LIMIT_CLAIM
        ):
            raise InvalidToken(f"{name!r} must be a whole number of at least 1")


def _narrowed(caller: KeyInfo, claims: dict[str, Any]) -> KeyInfo:
    """The caller as this token's claims narrow it. A claim beyond the tenant's makes a caller that
    `authorize` refuses (403): identified, so the refused call still leaves its usage row."""
    refused = replace(caller, end_user=claims["sub"])
    limits: dict[str, int] = {}
    for name in LIMIT_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        per_user = getattr(caller.end_user_limits, name)
        ceiling = per_user if per_user is not None else getattr(caller.tenant_limits, name)
        if ceiling is not None and value > ceiling:
            whose = "end-user limit" if per_user is not None else "limit"
            return replace(
                refused,
                refusal=f"The token's {name!r} claim ({value}) exceeds the tenant's {whose} ({ceiling}).",
            )
        limits[name] = value
    allowed = caller.allowed_models
    if claims.get("models") is not None:
        models = frozenset(claims["models"])
        outside = sorted(models - allowed) if allowed is not None else []
        if outside:
            return replace(
                refused,
                refusal="The token's 'models' claim names models the tenant's plan does not allow: "
                f"{', '.join(outside[:5])}{', …' if len(outside) > 5 else ''}.",
            )
        allowed = models
    return replace(
        caller,
        end_user=claims["sub"],
        allowed_models=allowed,
        end_user_limits=caller.end_user_limits.narrowed(Limits(**limits)),
    )


class EndUserTokens:
    """Authenticates end-user tokens for the Authenticator (gateway/auth.py), which dispatches here."""

    recognises = staticmethod(recognises)

    def __init__(self) -> None:
        # Unknown issuers are cached too (as None), so a repeated fake issuer costs one lookup per TTL.
        self.cache: TTLCache[str, Issuer | None] = TTLCache(ttl=hot.TOLLHOUSE_CACHE_TTL, loader=_load_issuer)

    def clear(self) -> None:
        self.cache.clear()

    async def authenticate(self, raw: str, client_ip: str | None, failures: FailedAuthCounter) -> KeyInfo:
        try:
            token = _read_unverified(raw)
            if self.cache.peek(token.issuer) is None:  # not an issuer this process knows: a lookup
                failures.refuse_if_blocked(client_ip)
            issuer = await self.cache.get(token.issuer)
            if issuer is None:
                raise InvalidToken("unknown issuer")
            claims = _verify(raw, token, issuer)
        except InvalidToken as exc:
            failures.refuse(client_ip, f"invalid end-user token: {exc}")
            raise errors.AuthenticationFailed(
                f"Invalid end-user token: {exc}.", code="invalid_token"
            ) from None
        return _narrowed(issuer.caller, claims)
