"""Revoked and expired keys, through the live gateway."""

from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from accounts.services import api_key_issue, api_key_revoke
from gateway.runtime import runtime
from tests.e2e.test_openai_sdk import sdk

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_refuses_a_revoked_key(gateway_server, world, usage_rows):
    issued = api_key_issue(tenant=world.acme, name="soon-revoked")
    client = sdk(gateway_server, issued.raw)
    client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    api_key_revoke(api_key=issued.api_key)
    runtime.authenticator.cache.invalidate(issued.api_key.prefix)  # pub/sub does this in a later issue
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "api_key_revoked"
    assert [row.status for row in usage_rows(2)] == [200, 403]


def test_it_refuses_an_expired_key(gateway_server, world, usage_rows):
    expired = api_key_issue(
        tenant=world.acme, name="old", expires_at=timezone.now() - timedelta(minutes=1)
    ).raw
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
