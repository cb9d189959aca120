"""End-user tokens through the Authenticator (gateway/endusers.py): a tenant-signed JWT becomes a caller
whose end user is its `sub`; every kind of bad token is a counted 401; claims narrow the tenant's
limits and models and are refused when they would widen them."""

from __future__ import annotations

import logging
import time

import pytest
from asgiref.sync import async_to_sync

from accounts.models import Plan, SigningKey, Tenant
from accounts.signing import signing_key_add, signing_key_deactivate
from gateway import errors
from gateway.auth import Authenticator, KeyInfo, Limits, authorize
from gateway.endusers import MAX_TOKEN_BYTES
from gateway.runtime import runtime
from tests.support.tokens import (
    ISSUER,
    SECRET,
    claims,
    ec_key,
    forge_hs256,
    mint,
    public_pem,
    raw_token,
    rsa_key,
)

pytestmark = pytest.mark.django_db(transaction=True)

IP = "203.0.113.9"


@pytest.fixture
def tenant():
    plan = Plan.objects.create(
        name="Team",
        rpm_limit=100,
        tpm_limit=50_000,
        concurrency_limit=8,
        allowed_models=["gpt-4.1", "gpt-4.1-mini"],
    )
    return Tenant.objects.create(name="Acme", slug="acme", plan=plan, end_user_rpm_limit=20)


@pytest.fixture
def hs_key(tenant):
    return signing_key_add(tenant=tenant, name="backend", issuer=ISSUER, algorithm="HS256", secret=SECRET)


def authenticate(token: str, authenticator: Authenticator | None = None) -> KeyInfo:
    return async_to_sync((authenticator or Authenticator()).authenticate)(token, IP)


def refused(token: str, authenticator: Authenticator | None = None) -> errors.GatewayError:
    with pytest.raises(errors.GatewayError) as failure:
        authenticate(token, authenticator)
    return failure.value


def test_it_turns_a_valid_token_into_a_caller_whose_end_user_is_its_sub(tenant, hs_key):
    key = authenticate(mint(sub="user-42"))
    assert key.id is None and key.tenant_id == tenant.id
    assert key.end_user == "user-42" and key.label == "end-user token"
    assert key.allowed_models == frozenset({"gpt-4.1", "gpt-4.1-mini"})  # the plan's
    assert key.tenant_limits == Limits(rpm=100, tpm=50_000, concurrency=8)
    assert key.end_user_limits == Limits(rpm=20)
    assert key.key_limits == Limits() and not key.ip_restricted
    authorize(key, IP)  # usable as it is


@pytest.mark.parametrize(
    ("algorithm", "private_key"),
    [("RS256", lambda: rsa_key()), ("ES256", lambda: ec_key())],
)
def test_it_verifies_public_key_tokens(tenant, algorithm, private_key):
    signing_key_add(
        tenant=tenant, name="pk", issuer=ISSUER, algorithm=algorithm, public_key=public_pem(private_key())
    )
    assert authenticate(mint(private_key(), algorithm, sub="pk-user")).end_user == "pk-user"


def _other_secret_token():
    return mint("another-secret-of-at-least-32-bytes-long!")


def _alg_none():
    import jwt

    return jwt.encode(claims(), None, algorithm="none")


def _oversized():
    return raw_token({"alg": "HS256", "typ": "JWT"}, b'{"pad":"' + b"x" * MAX_TOKEN_BYTES + b'"}')


BAD_TOKENS = {
    "bad signature": (_other_secret_token, "bad signature"),
    "tampered payload": (lambda: _tampered(), "bad signature"),
    "expired": (lambda: mint(lifetime=-120), "expired"),
    "missing exp": (lambda: _without("exp"), "missing the 'exp' claim"),
    "missing sub": (lambda: _without("sub"), "missing the 'sub' claim"),
    "missing iss": (lambda: _without("iss"), "missing the 'iss' claim"),
    "unknown issuer": (lambda: mint(iss="https://someone-else.test"), "unknown issuer"),
    "alg none": (_alg_none, "algorithm 'none' is not accepted"),
    "alg HS512": (lambda: mint("k" * 64, "HS512"), "algorithm 'HS512' is not accepted"),
    "not valid yet": (lambda: mint(nbf=int(time.time()) + 600), "not valid yet"),
    "too long-lived": (lambda: mint(lifetime=3 * 24 * 3600), "'exp' is more than 24 hours ahead"),
    "wrong audience": (lambda: mint(aud="another-service"), "'aud' must be 'tollhouse'"),
    "sub too long": (lambda: mint(sub="u" * 201), "'sub' must be 1 to 200 printable characters"),
    "sub with NUL": (lambda: mint(sub="user\x00admin"), "'sub' must be 1 to 200 printable characters"),
    "sub not a string": (lambda: forge_hs256(claims(sub=42), SECRET.encode()), "'sub' must be a string"),
    "rpm claim not a number": (lambda: mint(rpm="10"), "'rpm' must be a whole number of at least 1"),
    "rpm claim zero": (lambda: mint(rpm=0), "'rpm' must be a whole number of at least 1"),
    "models claim not a list": (lambda: mint(models="gpt-4.1"), "'models' must be a list"),
    "alg not a string": (
        lambda: raw_token({"alg": ["HS256"]}, b'{"iss":"x"}'),
        "the token's algorithm is not accepted",
    ),
    "payload not JSON": (lambda: raw_token({"alg": "HS256"}, b"not json"), "malformed"),
    "too large": (_oversized, f"larger than {MAX_TOKEN_BYTES} bytes"),
    "critical header": (
        lambda: raw_token({"alg": "HS256", "crit": ["exp"]}, b'{"iss":"x"}'),
        "unsupported critical header",
    ),
}


def _without(name: str) -> str:
    return mint(**{name: None})


def _tampered() -> str:
    """Alice's header and signature around a payload that says Mallory."""
    alice, mallory = mint(sub="alice").split("."), mint(sub="mallory").split(".")
    return ".".join([alice[0], mallory[1], alice[2]])


def test_each_bad_token_kind_gets_401_and_is_counted(hs_key, caplog):
    caplog.set_level(logging.DEBUG)
    for kind, (make, reason) in BAD_TOKENS.items():
        token = make()
        authenticator = Authenticator()
        error = refused(token, authenticator)
        assert (error.status, error.code) == (401, "invalid_token"), kind
        assert error.message.startswith("Invalid end-user token: ") and reason in error.message, kind
        assert authenticator.failures.total == 1, kind
        # Never logged, never echoed: neither the token nor its signature.
        signature = token.rsplit(".", 1)[-1] or token
        assert signature not in error.message and signature not in caplog.text, kind


def test_it_refuses_an_hs256_token_signed_with_the_tenants_rsa_public_key(tenant):
    """The HS/RS swap: whoever knows the public key signs with it as an HMAC secret."""
    pem = public_pem(rsa_key())
    signing_key_add(tenant=tenant, name="rsa", issuer=ISSUER, algorithm="RS256", public_key=pem)
    stored_pem = SigningKey.objects.get().public_key
    for hmac_key in (pem, stored_pem):
        error = refused(forge_hs256(claims(), hmac_key.encode()))
        assert (error.status, error.code) == (401, "invalid_token")
        assert "no active HS256 signing key" in error.message
    # and an RS256 token made with the right key still works
    assert authenticate(mint(rsa_key(), "RS256")).end_user == "end-user-1"


def test_it_refuses_an_rs256_token_verified_against_an_hs256_secret(hs_key):
    assert "no active RS256 signing key" in refused(mint(rsa_key(), "RS256")).message


def test_it_refuses_garbage_that_looks_like_a_token_as_a_bad_api_key(hs_key):
    error = refused("not.a.token!")
    assert (error.status, error.code) == (401, "invalid_api_key")


# -- claims: narrowing, never widening ------------------------------------------------------------


def test_claims_narrow_the_tenants_models_and_limits(hs_key):
    key = authenticate(mint(models=["gpt-4.1-mini"], rpm=5, tpm=1000, concurrency=2))
    assert key.allowed_models == frozenset({"gpt-4.1-mini"})
    assert key.model_allowed("gpt-4.1-mini") and not key.model_allowed("gpt-4.1")
    assert key.end_user_limits == Limits(rpm=5, tpm=1000, concurrency=2)
    assert key.tenant_limits == Limits(rpm=100, tpm=50_000, concurrency=8)  # untouched


def test_claims_may_equal_the_tenants_limits(hs_key):
    key = authenticate(mint(rpm=20, tpm=50_000, concurrency=8, models=["gpt-4.1", "gpt-4.1-mini"]))
    assert key.end_user_limits == Limits(rpm=20, tpm=50_000, concurrency=8)


@pytest.mark.parametrize(
    ("claim", "message"),
    [
        ({"rpm": 21}, "The token's 'rpm' claim (21) exceeds the tenant's end-user limit (20)."),
        ({"tpm": 50_001}, "The token's 'tpm' claim (50001) exceeds the tenant's limit (50000)."),
        ({"concurrency": 9}, "The token's 'concurrency' claim (9) exceeds the tenant's limit (8)."),
        (
            {"models": ["gpt-4.1", "o3-pro"]},
            "The token's 'models' claim names models the tenant's plan does not allow: o3-pro.",
        ),
    ],
)
def test_a_claim_that_would_widen_the_tenants_limits_is_refused(hs_key, claim, message):
    key = authenticate(mint(**claim))  # identified (so the call is recorded), then refused
    assert key.end_user == "end-user-1"
    with pytest.raises(errors.PermissionDenied) as failure:
        authorize(key, IP)
    error = failure.value
    assert (error.status, error.code, error.message) == (403, "token_claims_exceed_tenant", message)


def test_without_any_tenant_limit_a_limit_claim_sets_the_end_users(tenant, hs_key):
    Plan.objects.filter(pk=tenant.plan_id).update(rpm_limit=None, allowed_models=[])
    Tenant.objects.filter(pk=tenant.pk).update(end_user_rpm_limit=None)
    key = authenticate(mint(rpm=10_000, models=["anything"]))
    assert key.end_user_limits.rpm == 10_000 and key.allowed_models == frozenset({"anything"})


# -- rotation, deactivation, caches ----------------------------------------------------------------


def test_two_active_keys_both_verify_during_a_rotation(tenant, hs_key):
    signing_key_add(
        tenant=tenant,
        name="new",
        issuer=ISSUER,
        algorithm="ES256",
        public_key=public_pem(ec_key()),
        key_id="k2",
    )
    newer_secret = "the-next-shared-secret-0123456789-abcd"
    signing_key_add(
        tenant=tenant, name="newer", issuer=ISSUER, algorithm="HS256", secret=newer_secret, key_id="k3"
    )
    authenticator = Authenticator()
    assert authenticate(mint(SECRET, sub="old"), authenticator).end_user == "old"  # no kid: tries each
    assert authenticate(mint(ec_key(), "ES256", kid="k2", sub="new"), authenticator).end_user == "new"
    assert authenticate(mint(newer_secret, kid="k3", sub="newer"), authenticator).end_user == "newer"
    # an unknown kid falls back to the keys registered without one
    assert authenticate(mint(SECRET, kid="unknown", sub="old"), authenticator).end_user == "old"
    # a kid picks its key: the old secret does not verify as k3
    assert "bad signature" in refused(mint(SECRET, kid="k3"), authenticator).message


def test_a_deactivated_key_no_longer_verifies(tenant, hs_key):
    signing_key_add(
        tenant=tenant, name="new", issuer=ISSUER, algorithm="ES256", public_key=public_pem(ec_key())
    )
    signing_key_deactivate(signing_key=hs_key)
    assert "no active HS256 signing key" in refused(mint(SECRET)).message
    assert authenticate(mint(ec_key(), "ES256")).end_user == "end-user-1"
    SigningKey.objects.update(active=False)
    assert "unknown issuer" in refused(mint(ec_key(), "ES256")).message


def test_the_runtimes_cache_clear_drops_the_issuers_keys(hs_key):
    """A broadcast config change calls Runtime.clear_caches: a deactivated key stops working then,
    not at the end of the TTL."""
    runtime.clear_caches()
    assert authenticate(mint(), runtime.authenticator).end_user == "end-user-1"
    # Deactivated behind the services' back (no broadcast of its own), so only the explicit
    # config change below can drop the cached key.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE accounts_signingkey SET active = false WHERE id = %s", [hs_key.pk])
    assert authenticate(mint(), runtime.authenticator).end_user == "end-user-1"  # cached, as designed
    runtime.apply_config_change({"kind": "all"})
    assert "unknown issuer" in refused(mint(), runtime.authenticator).message


def test_an_issuer_claimed_by_two_tenants_fails_closed(tenant, hs_key, caplog):
    other = Tenant.objects.create(name="Globex", slug="globex")
    SigningKey.objects.create(tenant=other, name="around the services", issuer=ISSUER, algorithm="HS256")
    with caplog.at_level(logging.ERROR, logger="gateway.endusers"):
        assert "unknown issuer" in refused(mint()).message
    assert "active signing keys of 2 tenants" in caplog.text


def test_a_suspended_tenants_tokens_are_refused_by_authorize(tenant, hs_key):
    Tenant.objects.filter(pk=tenant.pk).update(status=Tenant.Status.SUSPENDED)
    key = authenticate(mint())
    with pytest.raises(errors.PermissionDenied) as failure:
        authorize(key, IP)
    assert failure.value.code == "tenant_suspended"


def test_a_blocked_address_is_refused_before_an_unknown_issuer_is_looked_up(hs_key):
    authenticator = Authenticator()
    assert authenticate(mint(), authenticator).end_user == "end-user-1"  # the issuer is cached now
    for i in range(authenticator.failures.limit):
        assert refused(mint(iss=f"https://fake-{i}.test"), authenticator).status == 401
    error = refused(mint(iss="https://fake-next.test"), authenticator)
    assert (error.status, error.code) == (429, "too_many_failed_authentications")
    assert not authenticator.end_users.cache.holds("https://fake-next.test")  # never looked up
    # a known issuer's token still works from that address
    assert authenticate(mint(), authenticator).end_user == "end-user-1"


def test_the_exp_leeway_the_readme_states_is_the_one_applied(hs_key):
    from pathlib import Path

    from gateway.endusers import LEEWAY_SECONDS

    assert authenticate(mint(lifetime=-(LEEWAY_SECONDS - 10))).end_user  # just expired: clock skew
    assert "expired" in refused(mint(lifetime=-(LEEWAY_SECONDS + 10))).message
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    tokens = readme[readme.index("**End-user tokens**") :].split("\n\n", 1)[0]
    assert f"{LEEWAY_SECONDS} s of leeway" in tokens
