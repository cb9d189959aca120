"""The management API over real HTTP (the gateway process's own server, httpx as the script):

A token issues, lists, rotates and revokes a key, sets a budget and reads the usage series; the
same call with a token of another tenant is 404; an expired or revoked token is 401; every change
made through the API is in the audit log with the token's user. The issued key is used with the
official `openai` SDK in between: it works, its rotated secret works, and it stops when revoked.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from accounts.models import AuditEntry
from tests.support.api import expired_token_for, revoked_token_for, token_for

pytestmark = pytest.mark.django_db(transaction=True)

HI = [{"role": "user", "content": "hi"}]


def chat(server: str, key: str) -> str:
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)
    reply = client.chat.completions.create(model="gpt-4.1", messages=HI)
    return reply.choices[0].message.content or ""


def api(server: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{server}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_token_runs_a_key_a_budget_and_the_usage_series(gateway_server, world, usage_rows):
    owner = api(gateway_server, token_for(world.owner))
    keys = "/tenants/acme/keys/"

    issued = owner.post(keys, json={"name": "from-ci", "rpm_limit": 100})
    assert issued.status_code == 201, issued.text
    key_id, secret = issued.json()["key"]["id"], issued.json()["secret"]
    assert chat(gateway_server, secret)

    listed = owner.get(keys)
    assert listed.status_code == 200
    assert "from-ci" in [key["name"] for key in listed.json()["results"]]
    assert secret not in listed.text

    rotated = owner.post(f"{keys}{key_id}/rotate/", json={"grace_seconds": 600})
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    assert chat(gateway_server, new_secret) and chat(gateway_server, secret)  # the old one in its grace

    budget = owner.post(
        "/tenants/acme/budgets/", json={"scope": "key", "api_key": key_id, "amount": "5", "period": "day"}
    )
    assert budget.status_code == 201, budget.text

    usage_rows(3)  # the pipeline has written the three calls and their rollups
    series = owner.get("/tenants/acme/usage/series/", params={"range": "24h"})
    assert series.status_code == 200
    assert series.json()["total_requests"] >= 3 and len(series.json()["buckets"]) == 24

    revoked = owner.post(f"{keys}{key_id}/revoke/")
    assert (revoked.status_code, revoked.json()["status"]) == (200, "revoked")
    time.sleep(0.2)  # the revocation is broadcast to the gateway's workers
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway_server, new_secret)

    # Another tenant's token: the same calls are 404, and change nothing.
    other = api(gateway_server, token_for(world.outsider))
    for response in (
        other.get(keys),
        other.post(keys, json={"name": "intruder"}),
        other.post(f"{keys}{key_id}/rotate/", json={}),
        other.get("/tenants/acme/usage/series/"),
        other.post("/tenants/acme/budgets/", json={"amount": "1"}),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    # Expired and revoked tokens: 401.
    for token, code in (
        (expired_token_for(world.owner), "token_expired"),
        (revoked_token_for(world.owner), "token_revoked"),
    ):
        response = api(gateway_server, token).get(keys)
        assert (response.status_code, response.json()["error"]["code"]) == (401, code)

    # Every change made through the API is in the audit log, by the token's user.
    made = AuditEntry.objects.filter(tenant=world.acme, actor__startswith="api:").order_by("id")
    assert [entry.action for entry in made] == ["key.issue", "key.rotate", "budget.create", "key.revoke"]
    assert {entry.actor_user_id for entry in made} == {world.owner.pk}
    assert not AuditEntry.objects.filter(
        tenant=world.acme, action="key.issue", object_repr__contains="intruder"
    ).exists()
