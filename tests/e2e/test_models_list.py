"""/v1/models and /v1/models/{model} with the official SDKs: every name a key may use (aliases
marked, pointing to their route), the context window and output limit, in OpenAI's shape and, for a
client that sends `anthropic-version`, in Anthropic's paged one."""

from __future__ import annotations

from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.services import api_key_issue
from gateway.models import Deployment, ModelRoute
from gateway.services import deployment_save, route_save

pytestmark = pytest.mark.django_db(transaction=True)

SLASHED = "meta-llama/Llama-3.1-8B"


@pytest.fixture
def catalog(world):
    route = ModelRoute.objects.get(name="gpt-4.1")
    route.context_window, route.max_output_tokens = 1047576, 32768
    route_save(route=route)
    slashed = route_save(route=ModelRoute(name=SLASHED, aliases=["llama"], max_output_tokens=2048))
    deployment_save(deployment=Deployment(route=slashed, provider=world.provider, upstream_model="llama"))
    return world


def openai_sdk(gateway_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10)


def anthropic_sdk(gateway_server: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway_server, api_key=key, max_retries=0, timeout=10)


def test_it_lists_routes_and_aliases_with_their_limits_in_openais_shape(gateway_server, catalog):
    models = {m.id: m for m in openai_sdk(gateway_server, catalog.key).models.list()}
    assert {"gpt-4.1", "gpt4", "claude-sonnet-4.5", SLASHED, "llama"} <= set(models)
    route, alias = models["gpt-4.1"], models["gpt4"]
    assert route.object == "model" and route.owned_by == "tollhouse" and route.created > 0
    assert route.model_extra["context_window"] == 1047576 and route.model_extra["max_output_tokens"] == 32768
    assert route.model_extra["aliases"] == ["gpt4"] and "alias_of" not in route.model_extra
    assert alias.model_extra["alias_of"] == "gpt-4.1" and alias.model_extra["context_window"] == 1047576
    # A route whose context window the catalog does not know says nothing about it.
    assert "context_window" not in models["claude-sonnet-4.5"].model_extra


def test_it_retrieves_one_model_by_name_or_alias_slashes_included(gateway_server, catalog):
    client = openai_sdk(gateway_server, catalog.key)
    assert client.models.retrieve("gpt4").model_extra["alias_of"] == "gpt-4.1"
    slashed = client.models.retrieve(SLASHED)
    assert slashed.id == SLASHED and slashed.model_extra["aliases"] == ["llama"]
    assert slashed.model_extra["max_output_tokens"] == 2048
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("no-such-model")
    assert raised.value.body["code"] == "model_not_found" and "no-such-model" in raised.value.body["message"]


def test_it_shows_a_key_only_what_it_may_use(gateway_server, catalog):
    narrow = api_key_issue(tenant=catalog.acme, name="narrow", allowed_models=["gpt4"]).raw
    client = openai_sdk(gateway_server, narrow)
    [only] = client.models.list().data
    assert only.id == "gpt4" and only.model_extra["alias_of"] == "gpt-4.1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("claude-sonnet-4.5")
    wide = api_key_issue(tenant=catalog.acme, name="wide", allowed_models=["gpt-4.1"]).raw
    assert {m.id for m in openai_sdk(gateway_server, wide).models.list()} == {"gpt-4.1", "gpt4"}
    with pytest.raises(openai.AuthenticationError):
        openai_sdk(gateway_server, "th-nope").models.retrieve("gpt-4.1")
    anonymous = httpx.get(f"{gateway_server}/v1/models/gpt-4.1")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["type"] == "authentication_error"


def test_the_plan_limits_the_list_too(gateway_server, catalog):
    from accounts.services import plan_save

    plan = catalog.globex.plan
    plan.allowed_models = ["claude-sonnet-4.5", SLASHED]
    plan_save(plan=plan)
    listed = {m.id for m in openai_sdk(gateway_server, catalog.globex_key).models.list()}
    assert listed == {"claude-sonnet-4.5", SLASHED, "llama"}


def test_it_answers_anthropics_sdk_in_anthropics_shape_page_by_page(gateway_server, catalog):
    client = anthropic_sdk(gateway_server, catalog.key)
    expected = sorted(m.id for m in openai_sdk(gateway_server, catalog.key).models.list())
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == expected[:2] and first.has_more
    assert (first.first_id, first.last_id) == (expected[0], expected[1])
    # The SDK follows after_id to the end.
    assert [m.id for m in client.models.list(limit=2)] == expected
    info = client.models.retrieve("gpt-4.1")
    assert info.type == "model" and info.display_name == "gpt-4.1" and info.created_at.year >= 2025
    assert (info.max_input_tokens, info.max_tokens) == (1047576, 32768)
    alias = client.models.retrieve("gpt4")
    assert alias.display_name == "gpt4 (alias of gpt-4.1)"
    before = client.models.list(before_id=expected[3], limit=2)
    assert [m.id for m in before.data] == expected[1:3] and before.has_more
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.models.retrieve("no-such-model")
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_sdk(gateway_server, "th-nope").models.list()


def test_it_refuses_bad_paging_in_anthropics_error_shape(gateway_server, catalog):
    headers = {"x-api-key": catalog.key, "anthropic-version": "2023-06-01"}
    for query in ("limit=0", "limit=1001", "limit=x", "after_id=a&before_id=b"):
        response = httpx.get(f"{gateway_server}/v1/models?{query}", headers=headers)
        assert response.status_code == 400, query
        assert (
            response.json()["type"] == "error" and response.json()["error"]["type"] == "invalid_request_error"
        )
    empty = httpx.get(f"{gateway_server}/v1/models?after_id=zzzz", headers=headers).json()
    assert empty == {"data": [], "has_more": False, "first_id": None, "last_id": None}


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.text(min_size=1, max_size=60), anthropic_version=st.booleans())
def test_any_model_id_gets_the_model_or_a_404_in_the_clients_shape(
    gateway_server, catalog, name, anthropic_version
):
    headers = {"Authorization": f"Bearer {catalog.key}"}
    if anthropic_version:
        headers["anthropic-version"] = "2023-06-01"
    response = httpx.get(f"{gateway_server}/v1/models/{quote(name, safe='')}", headers=headers, timeout=10)
    assert response.status_code in (200, 404), (name, response.status_code, response.text[:300])
    body = response.json()
    if response.status_code == 200:
        assert body["id"] == name
    elif anthropic_version:
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    else:
        assert body["error"]["code"] == "model_not_found"


def test_a_synced_catalog_file_is_what_the_list_shows(gateway_server, world, tmp_path):
    from tests.support.manage import call

    path = tmp_path / "catalog.toml"
    path.write_text(
        '[routes."team-model"]\naliases = ["tm"]\ncontext_window = 64000\nmax_output_tokens = 4000\n'
        '[[routes."team-model".deployments]]\nprovider = "mock"\nmodel = "gpt-4.1"\n'
    )
    call("catalog_sync", str(path))
    models = {m.id: m for m in openai_sdk(gateway_server, world.key).models.list()}
    assert models["team-model"].model_extra == {
        "context_window": 64000, "max_output_tokens": 4000, "aliases": ["tm"],
    }  # fmt: skip
    assert models["tm"].model_extra["alias_of"] == "team-model"
    reply = openai_sdk(gateway_server, world.key).chat.completions.create(
        model="tm", messages=[{"role": "user", "content": "Hi"}]
    )
    assert reply.choices[0].message.content
