"""End-user tokens through the live gateway with the official `openai` SDK: a tenant-signed JWT is the
API key, its `sub` is the end user in the usage row; bad tokens get 401 and leave no row; claims that
would widen the tenant's limits get 403; a deactivated signing key stops working on every worker."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from accounts.models import Tenant
from accounts.signing import signing_key_add, signing_key_deactivate
from tests.support.tokens import ISSUER, SECRET, claims, forge_hs256, mint, public_pem, rsa_key

pytestmark = pytest.mark.django_db(transaction=True)

RSA_ISSUER = "https://rsa.acme.test"
MESSAGES = [{"role": "user", "content": "Hi [mock prompt_tokens=20 tokens=5]"}]


def sdk(gateway_server: str, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=token, max_retries=0, timeout=10)


@pytest.fixture
def signing_key(world):
    return signing_key_add(tenant=world.acme, name="backend", issuer=ISSUER, algorithm="HS256", secret=SECRET)


def test_a_valid_token_works_and_its_sub_is_the_end_user_of_the_usage_row(
    gateway_server, world, signing_key, usage_rows
):
    reply = sdk(gateway_server, mint(sub="customer-81")).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, user="whatever-the-body-says"
    )
    assert reply.choices[0].message.content and reply.usage.completion_tokens == 5

    [row] = usage_rows(1)
    assert row.status == 200 and row.end_user == "customer-81"  # the signed sub, not the body's user
    assert row.tenant_id == world.acme.id and row.api_key_id is None
    assert (row.prompt_tokens, row.completion_tokens) == (20, 5) and row.cost > 0


def test_each_bad_token_kind_gets_401_and_leaves_no_usage_row(gateway_server, world, signing_key, usage_rows):
    signing_key_add(
        tenant=world.acme, name="rsa", issuer=RSA_ISSUER, algorithm="RS256", public_key=public_pem(rsa_key())
    )
    import jwt

    bad = {
        "bad signature": mint("not-the-tenants-secret-but-long-enough!!"),
        "expired": mint(lifetime=-300),
        "missing exp": mint(exp=None),
        "unknown issuer": mint(iss="https://unknown.test"),
        "alg none": jwt.encode(claims(), None, algorithm="none"),
        "HS/RS swap": forge_hs256(claims(iss=RSA_ISSUER), public_pem(rsa_key()).encode()),
        "malformed": mint().rsplit(".", 1)[0] + ".not*base64",
    }
    with httpx.Client(base_url=gateway_server) as client:
        for kind, token in bad.items():
            response = client.post(
                "/v1/chat/completions",
                json={"model": "gpt-4.1", "messages": MESSAGES},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 401, (kind, response.text)
            error = response.json()["error"]
            assert error["type"] == "authentication_error", kind
            if kind != "malformed":  # not token-shaped: an invalid API key as far as anyone can tell
                assert error["code"] == "invalid_token" and "Invalid end-user token" in error["message"], kind
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway_server, bad["expired"]).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert usage_rows(0) == []
    # a good token of each issuer still works
    sdk(gateway_server, mint()).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    sdk(gateway_server, mint(rsa_key(), "RS256", iss=RSA_ISSUER)).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES
    )


def test_claims_narrow_and_may_not_widen(gateway_server, world, signing_key, usage_rows):
    Tenant.objects.filter(pk=world.acme.pk).update(end_user_rpm_limit=10)

    with pytest.raises(openai.PermissionDeniedError) as failure:
        sdk(gateway_server, mint(rpm=11)).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert failure.value.code == "token_claims_exceed_tenant"
    assert "'rpm' claim (11) exceeds the tenant's end-user limit (10)" in failure.value.message

    narrowed = sdk(gateway_server, mint(rpm=10, models=["gemini-2.5-flash"]))
    assert narrowed.chat.completions.create(model="gemini-2.5-flash", messages=MESSAGES).choices
    with pytest.raises(openai.PermissionDeniedError) as failure:
        narrowed.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert failure.value.code == "model_not_allowed"
    rows = usage_rows(3)  # the refused widening call is identified, so it is recorded too
    assert [(row.status, row.end_user) for row in rows] == [
        (403, "end-user-1"),
        (200, "end-user-1"),
        (403, "end-user-1"),
    ]


def test_a_deactivated_signing_key_stops_its_tokens_at_once(gateway_server, world, signing_key):
    client = sdk(gateway_server, mint())
    assert client.chat.completions.create(model="gpt-4.1", messages=MESSAGES).choices
    signing_key_deactivate(signing_key=signing_key)
    # The change is broadcast: refused well before the cache TTL would have let it go.
    deadline = time.monotonic() + 2
    while True:
        try:
            client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
        except openai.AuthenticationError as exc:
            assert exc.code == "invalid_token" and "unknown issuer" in exc.message
            break
        assert time.monotonic() < deadline, "a deactivated key's token still works"
        time.sleep(0.05)
