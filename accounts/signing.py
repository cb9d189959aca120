"""Signing keys for end-user tokens: a tenant's own backend signs short-lived JWTs for its end users
with one of these, and the gateway verifies them (gateway/endusers.py).

HS256 keys are a shared secret (stored encrypted, never shown again); RS256 and ES256 keys are the
tenant's public key, so the gateway never holds what signs. An issuer (`iss`) belongs to one tenant
only: a token's issuer is how the gateway finds the tenant, so a second tenant must not be able to
register it. Several keys of one issuer may be active at once, which is how a tenant rotates.

Every write validates here, whoever calls it (admin, `manage.py signing_key_add`, later the console),
and a message never contains the secret or the key material.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from accounts.audit import Actor, audit_record, audit_snapshot
from accounts.models import SigningKey, Tenant

MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
MAX_SECRET_BYTES = 1024
MIN_RSA_BITS = 2048
MAX_PUBLIC_KEY_CHARS = 10_000
# Each token is tried against its issuer's active keys of its algorithm (fewer with a `kid`), so the
# number bounds what one token can cost to verify.
MAX_ACTIVE_KEYS_PER_ISSUER = 10
# What the audit log records of a signing key: never the secret, nor the key material.
AUDIT_FIELDS = ("name", "issuer", "algorithm", "key_id", "active")

_PEM_MARKERS = ("-----BEGIN", "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-")


def _lock_issuer(issuer: str) -> None:
    """Serialise writes that claim one issuer, so two tenants cannot both register it at once (no
    unique constraint can say "one tenant per issuer" across several rows). The gateway also refuses
    an issuer whose active keys belong to more than one tenant, so a row written around this fails
    closed."""
    if connection.vendor == "postgresql":
        lock = int.from_bytes(hashlib.sha256(issuer.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock])


def _public_key_pem(algorithm: str, pem: str) -> str:
    """The public key in normal form (SubjectPublicKeyInfo PEM), or ValidationError saying what is wrong
    with it, without quoting it."""
    text = pem.strip()
    if "PRIVATE KEY" in text:
        raise ValidationError(
            {
                "public_key": "This is a private key: give the public key only (the tenant keeps the private one)."
            }
        )
    if len(text) > MAX_PUBLIC_KEY_CHARS:
        raise ValidationError({"public_key": f"A public key is at most {MAX_PUBLIC_KEY_CHARS} characters."})
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValidationError(
            {"public_key": "Not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')."}
        ) from None
    if algorithm == SigningKey.Algorithm.RS256:
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValidationError({"public_key": "RS256 needs an RSA public key."})
        if key.key_size < MIN_RSA_BITS:
            raise ValidationError(
                {"public_key": f"RS256 needs an RSA key of at least {MIN_RSA_BITS} bits, not {key.key_size}."}
            )
    elif not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValidationError({"public_key": "ES256 needs an EC public key on the P-256 curve."})
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _check_secret(secret: str) -> None:
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise ValidationError({"secret": f"An HS256 secret must be at least {MIN_SECRET_BYTES} bytes long."})
    if size > MAX_SECRET_BYTES:
        raise ValidationError({"secret": f"An HS256 secret is at most {MAX_SECRET_BYTES} bytes long."})
    if secret.lstrip().startswith(_PEM_MARKERS):
        # PyJWT refuses an asymmetric key as an HMAC secret (algorithm confusion), so it could never verify.
        raise ValidationError(
            {"secret": "An HS256 secret must be a random string, not a PEM or SSH key (use RS256 or ES256)."}
        )


def _check_placement(signing_key: SigningKey) -> None:
    """The rules that involve other rows: issuer ownership, key ids, how many keys are active."""
    issuer = signing_key.issuer
    others = SigningKey.objects.filter(issuer=issuer).exclude(pk=signing_key.pk)
    if others.exclude(tenant_id=signing_key.tenant_id).exists():
        raise ValidationError({"issuer": f"The issuer {issuer!r} belongs to another tenant."})
    if not signing_key.active:
        return
    active = others.filter(active=True)
    if signing_key.key_id and active.filter(key_id=signing_key.key_id).exists():
        raise ValidationError(
            {
                "key_id": f"An active key of the issuer {issuer!r} already has the key id {signing_key.key_id!r}."
            }
        )
    if active.count() >= MAX_ACTIVE_KEYS_PER_ISSUER:
        raise ValidationError(
            {
                "active": f"The issuer {issuer!r} already has {MAX_ACTIVE_KEYS_PER_ISSUER} active keys: "
                "deactivate one first."
            }
        )


def _check_material(signing_key: SigningKey) -> None:
    """A row the gateway can verify with: a secret for HS256, a public key otherwise, never both."""
    if signing_key.algorithm == SigningKey.Algorithm.HS256:
        if not signing_key.secret_encrypted or signing_key.public_key:
            raise ValidationError({"secret": "An HS256 key needs a secret and no public key."})
    elif not signing_key.public_key or signing_key.secret_encrypted:
        raise ValidationError(
            {"public_key": f"An {signing_key.algorithm} key needs a public key and no secret."}
        )


def _check_text(field: str, value: str) -> None:
    if value != value.strip() or not value.isprintable():
        raise ValidationError({field: "Must be printable, without leading or trailing spaces."})


def signing_key_prepare(
    *,
    tenant: Tenant,
    name: str,
    issuer: str,
    algorithm: str,
    secret: str = "",
    public_key: str = "",
    key_id: str = "",
) -> SigningKey:
    """A new signing key, validated but not saved (the admin's form checks with this): HS256 takes a
    secret (>= 32 bytes), RS256 an RSA public key (>= 2048 bits), ES256 an EC P-256 public key (PEM)."""
    if algorithm not in SigningKey.Algorithm.values:
        raise ValidationError(
            {"algorithm": f"The algorithm must be HS256, RS256 or ES256, not {algorithm!r}."}
        )
    if algorithm == SigningKey.Algorithm.HS256:
        if public_key:
            raise ValidationError({"public_key": "An HS256 key takes a secret, not a public key."})
        _check_secret(secret)
        pem = ""
    else:
        if secret:
            raise ValidationError({"secret": f"An {algorithm} key takes a public key, not a secret."})
        if not public_key.strip():
            raise ValidationError({"public_key": f"An {algorithm} key needs a PEM public key."})
        pem = _public_key_pem(algorithm, public_key)
    signing_key = SigningKey(
        tenant=tenant, name=name, issuer=issuer, algorithm=algorithm, public_key=pem, key_id=key_id
    )
    signing_key.set_secret(secret)
    signing_key_check(signing_key=signing_key)
    return signing_key


def signing_key_check(*, signing_key: SigningKey) -> None:
    """Every rule a saved key must meet (ValidationError naming the field): the row itself, its key
    material, and the rules involving other rows."""
    signing_key.full_clean()
    _check_material(signing_key)
    _check_text("issuer", signing_key.issuer)
    if signing_key.key_id:
        _check_text("key_id", signing_key.key_id)
    _check_placement(signing_key)


@transaction.atomic
def signing_key_add(
    *,
    tenant: Tenant,
    name: str,
    issuer: str,
    algorithm: str,
    secret: str = "",
    public_key: str = "",
    key_id: str = "",
    actor: Actor | None = None,
) -> SigningKey:
    """Add an active signing key (see `signing_key_prepare` for what each algorithm takes)."""
    signing_key = signing_key_prepare(
        tenant=tenant,
        name=name,
        issuer=issuer,
        algorithm=algorithm,
        secret=secret,
        public_key=public_key,
        key_id=key_id,
    )
    return signing_key_save(signing_key=signing_key, actor=actor)


@dataclass(frozen=True)
class IssuedSigningKey:
    signing_key: SigningKey
    secret: str  # an HS256 secret generated here: shown once, on the page that added the key; else ""


GENERATED_SECRET_BYTES = 48


@transaction.atomic
def signing_key_issue(
    *,
    tenant: Tenant,
    name: str,
    issuer: str,
    algorithm: str,
    secret: str = "",
    public_key: str = "",
    key_id: str = "",
    actor: Actor | None = None,
) -> IssuedSigningKey:
    """`signing_key_add`, except that an HS256 key given no secret gets a random one, returned once
    (the console shows it on the page that added the key; it is stored encrypted and never shown again).
    A secret the tenant brings is not echoed back: they have it already."""
    generated = ""
    if algorithm == SigningKey.Algorithm.HS256 and not secret and not public_key:
        generated = secret = secrets.token_urlsafe(GENERATED_SECRET_BYTES)
    signing_key = signing_key_add(
        tenant=tenant,
        name=name,
        issuer=issuer,
        algorithm=algorithm,
        secret=secret,
        public_key=public_key,
        key_id=key_id,
        actor=actor,
    )
    return IssuedSigningKey(signing_key=signing_key, secret=generated)


@transaction.atomic
def signing_key_save(*, signing_key: SigningKey, actor: Actor | None = None) -> SigningKey:
    """Save a key's settings as they are on the instance (name, key id, active). Its tenant, issuer,
    algorithm and key material are set once by `signing_key_add`: rotate by adding a new key."""
    _lock_issuer(signing_key.issuer)
    signing_key_check(signing_key=signing_key)
    stored = SigningKey.objects.filter(pk=signing_key.pk).first() if signing_key.pk else None
    before = audit_snapshot(stored, AUDIT_FIELDS)
    signing_key.save()
    after = audit_snapshot(signing_key, AUDIT_FIELDS)
    if before != after:
        action = "signing_key.add" if stored is None else "signing_key.change"
        audit_record(
            tenant=signing_key.tenant,
            actor=actor,
            action=action,
            target=signing_key,
            before=before,
            after=after,
        )
    return signing_key


@transaction.atomic
def signing_key_deactivate(*, signing_key: SigningKey, actor: Actor | None = None) -> SigningKey:
    """Tokens it signed stop working on every gateway worker within moments (the change is broadcast).
    A key already inactive is left as it is (and nothing is recorded)."""
    # A broadcasting update: the gateways drop the key from their caches.
    changed = SigningKey.objects.filter(pk=signing_key.pk, active=True).update(active=False)
    signing_key.active = False
    if changed:
        audit_record(
            tenant=signing_key.tenant,
            actor=actor,
            action="signing_key.deactivate",
            target=signing_key,
            before={"active": True},
            after={"active": False},
        )
    return signing_key


@transaction.atomic
def signing_key_delete(*, signing_key: SigningKey, actor: Actor | None = None) -> None:
    """Delete a key (the admin's delete): recorded with what it was, never its material."""
    audit_record(
        tenant=signing_key.tenant,
        actor=actor,
        action="signing_key.delete",
        target=signing_key,
        before=audit_snapshot(signing_key, AUDIT_FIELDS),
        after=None,
    )
    signing_key.delete()


def active_signing_keys(*, issuer: str) -> list[SigningKey]:
    """The issuer's active keys with their tenant and plan (what the gateway verifies a token with)."""
    return list(
        SigningKey.objects.select_related("tenant__plan").filter(issuer=issuer, active=True).order_by("id")
    )
