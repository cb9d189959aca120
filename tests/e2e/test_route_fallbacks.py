"""A route's fallback routes (ModelRoute.fallbacks, gateway/executor.py): when every deployment of the
route failed, after its retries, the call is served by the next route, and the usage row shows every
attempt and bills the model that answered."""

from __future__ import annotations

import uuid
from decimal import Decimal

import openai
import pytest

from gateway.models import Deployment, ModelRoute
from gateway.providers.openai import OpenAIAdapter
from gateway.services import route_save

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_falls_back_to_the_next_route_when_every_deployment_failed(
    gateway_server, world, usage_rows, settings
):
    settings.TOLLHOUSE_UPSTREAM_BACKOFF_SECONDS = 0.01
    route = ModelRoute.objects.get(name="claude-sonnet-4.5")
    route.fallbacks = ["gpt-4.1"]
    route_save(route=route)
    # The first three requests naming this key fail: the route's one deployment and its two retries.
    directives = f"[mock status=500 fault_times=3 fault_key={uuid.uuid4().hex} prompt_tokens=10 tokens=4]"
    client = openai.OpenAI(base_url=gateway_server + "/v1", api_key=world.key, max_retries=0, timeout=20)
    reply = client.chat.completions.create(
        model="claude-sonnet-4.5", messages=[{"role": "user", "content": f"Hi {directives}"}]
    )
    assert len(reply.choices[0].message.content.split()) == 4
    [row] = usage_rows(1)
    first = Deployment.objects.get(route=route).id
    fallback = Deployment.objects.get(route__name="gpt-4.1").id
    assert [(a["deployment_id"], a["status"]) for a in row.attempt_log] == [
        (first, 500),
        (first, 500),
        (first, 500),
        (fallback, 200),
    ]
    assert row.status == 200 and row.attempts == 4 and row.deployment_id == fallback
    assert row.requested_model == "claude-sonnet-4.5" and row.served_model == "gpt-4.1"
    assert row.cost == (Decimal(10) * 2 + Decimal(4) * 8) / 1_000_000  # gpt-4.1's price: it answered


def test_a_prompt_too_long_for_the_model_is_an_error_that_falls_back():
    error = OpenAIAdapter().error(
        status=400,
        headers={},
        content=b'{"error": {"message": "maximum context length is 8192 tokens", "code": "context_length_exceeded"}}',
        credential="",
    )
    assert (error.kind, error.status, error.retryable) == ("context_length_exceeded", 400, False)
    assert "maximum context length" in error.message
