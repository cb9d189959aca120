"""Revoked and expired keys, through the live gateway."""

import time
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from accounts.services import api_key_issue, api_key_revoke, api_key_save
from tests.e2e.test_openai_sdk import sdk

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_refuses_a_revoked_key(gateway_server, world, usage_rows):
    issued = api_key_issue(tenant=world.acme, name="soon-revoked")
    client = sdk(gateway_server, issued.raw)
    client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    api_key_revoke(api_key=issued.api_key)
    # No waiting for the cache TTL: the revocation is broadcast to the workers.
    time.sleep(0.2)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "api_key_revoked"
    assert [row.status for row in usage_rows(2)] == [200, 403]


def test_it_refuses_an_expired_key(gateway_server, world, usage_rows):
    # Issuing a key that is already expired is refused; one that expired since is what this is.
    issued = api_key_issue(tenant=world.acme, name="old", expires_at=timezone.now() + timedelta(minutes=1))
    issued.api_key.expires_at = timezone.now() - timedelta(minutes=1)
    api_key_save(api_key=issued.api_key)
    expired = issued.raw
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gateway_server, expired).chat.completions.create(
            model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "api_key_expired"
    assert [row.status for row in usage_rows(1)] == [403]


def test_it_reads_a_key_from_x_api_key_too(gateway_server, world):
    import httpx

    response = httpx.post(
        gateway_server + "/v1/chat/completions",
        headers={"x-api-key": world.key},
        json={"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200


def test_it_applies_a_new_route_and_price_without_waiting_for_the_cache(gateway_server, world, usage_rows):
    from decimal import Decimal

    from billing.services import model_price_set
    from gateway.services import PRICES_FROM, deployment_upsert, route_upsert

    client = sdk(gateway_server, world.key)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="brand-new", messages=[{"role": "user", "content": "hi"}])
    route = route_upsert(name="brand-new")
    deployment_upsert(route=route, provider=world.provider, upstream_model="brand-new")
    model_price_set(
        model="brand-new",
        input_per_mtok=Decimal("1"),
        cached_input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("1"),
        effective_from=PRICES_FROM,
    )
    time.sleep(0.2)
    client.chat.completions.create(
        model="brand-new", messages=[{"role": "user", "content": "[mock prompt_tokens=1000 tokens=1000]"}]
    )
    assert [(row.status, row.cost) for row in usage_rows(2)] == [(404, 0), (200, Decimal("0.002"))]
