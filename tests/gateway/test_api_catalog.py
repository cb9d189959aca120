"""/api/v1/providers/, /api/v1/routes/, /api/v1/deployments/: operator endpoints per way in (only an
operator's token gets in; tenants' tokens get 404; no, expired or revoked tokens 401), on the same
services as /ops/: credentials write-only, the catalog's rules as 400s naming the field, every change
audited with the token's user, a connection test against the mock with the credential redacted."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from accounts.models import AuditEntry
from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import deployment_upsert, provider_upsert, route_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.api import API_VISITORS, operator_user
from tests.support.secrets import registry
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

REFUSED = {"anonymous": 401, "expired": 401, "revoked": 401}
JSON = "application/json"


def expected(visitor: str, ok: int) -> int:
    return ok if visitor == "operator" else REFUSED.get(visitor, 404)


@pytest.fixture
def catalog() -> dict[str, Any]:
    provider = provider_upsert(name="mock", kind="mock", base_url="http://127.0.0.1:9/v1")
    route = route_upsert(name="gpt-4.1", aliases=["gpt4"])
    deployment = deployment_upsert(route=route, provider=provider, upstream_model="gpt-4.1")
    return {"provider": provider, "route": route, "deployment": deployment}


def _calls(catalog: dict[str, Any]) -> list[tuple[str, str, Any, int]]:
    p, r, d = catalog["provider"].pk, catalog["route"].pk, catalog["deployment"].pk
    return [
        ("get", "/api/v1/providers/", None, 200),
        ("post", "/api/v1/providers/", {"name": "new", "kind": "mock", "base_url": "http://h/v1"}, 201),
        ("get", f"/api/v1/providers/{p}/", None, 200),
        ("patch", f"/api/v1/providers/{p}/", {"read_timeout": "30"}, 200),
        ("post", f"/api/v1/providers/{p}/test/", {"model": "gpt-4.1"}, 200),
        ("get", "/api/v1/routes/", None, 200),
        ("post", "/api/v1/routes/", {"name": "claude", "aliases": ["sonnet"]}, 201),
        ("get", f"/api/v1/routes/{r}/", None, 200),
        ("patch", f"/api/v1/routes/{r}/", {"strategy": "cheapest"}, 200),
        ("get", "/api/v1/deployments/", None, 200),
        ("post", "/api/v1/deployments/", {"route": r, "provider": p, "upstream_model": "gpt-4.1-b"}, 201),
        ("get", f"/api/v1/deployments/{d}/", None, 200),
        ("patch", f"/api/v1/deployments/{d}/", {"enabled": False}, 200),
        ("delete", f"/api/v1/deployments/{d}/", None, 204),
    ]


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_only_an_operators_token_gets_in(api_client, roles, catalog, visitor):
    client = api_client(visitor)
    before = db_snapshot() if visitor != "operator" else None
    for method, url, body, ok in _calls(catalog):
        kwargs = {"data": body, "content_type": JSON} if body is not None else {}
        response = getattr(client, method)(url, **kwargs)
        assert response.status_code == expected(visitor, ok), (visitor, method, url, response.content[:300])
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "message", "field"}
    if before is not None:
        after = db_snapshot()
        # Only the refused tokens' own bookkeeping (last used) may differ: nothing of the catalog.
        for table in ("gateway.Provider", "gateway.ModelRoute", "gateway.Deployment", "billing.ModelPrice"):
            assert after[table] == before[table], table
        assert not AuditEntry.objects.filter(tenant=None, actor__startswith="api:").exists()
    else:
        entries = AuditEntry.objects.filter(tenant=None, actor_user=operator_user()).order_by("id")
        assert list(entries.values_list("action", flat=True)) == [
            "provider.create", "provider.update", "route.create", "route.update", "deployment.create",
            "deployment.update", "deployment.delete",
        ]  # fmt: skip
        assert all(entry.actor.startswith("api:operator@ops.test (token thp_") for entry in entries)


def test_a_credential_is_write_only(api_client, roles):
    client = api_client("operator")
    credential = registry.credential("sk-api-" + secrets.token_hex(16))
    body = {
        "name": "openai",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential": credential,
    }
    created = client.post("/api/v1/providers/", body, content_type=JSON)
    assert created.status_code == 201
    answer = created.json()
    assert answer["credential_state"] == {"kind": "stored", "label": f"stored ••••{credential[-4:]}"}
    provider = Provider.objects.get(name="openai")
    assert provider.get_credential() == credential
    url = f"/api/v1/providers/{provider.pk}/"
    responses = [created, client.get(url), client.get("/api/v1/providers/")]
    responses.append(client.patch(url, {"enabled": False}, content_type=JSON))  # keeps the credential
    provider.refresh_from_db()
    assert provider.get_credential() == credential and provider.enabled is False
    responses.append(client.patch(url, {"clear_credential": True}, content_type=JSON))
    assert responses[-1].json()["credential_state"]["kind"] == "none"
    responses.append(client.patch(url, {"credential_env": "OPENAI_API_KEY"}, content_type=JSON))
    assert responses[-1].json()["credential_state"]["label"].startswith("from env OPENAI_API_KEY (")
    for response in responses:
        assert credential not in response.content.decode()
    assert credential not in str(list(AuditEntry.objects.values_list("before", "after")))
    entry = AuditEntry.objects.filter(action="provider.create").get()
    assert entry.actor.startswith("api:operator@ops.test (token thp_")


@pytest.mark.parametrize(
    ("url", "body", "field", "message"),
    [
        ("/api/v1/providers/", {"name": "x y", "kind": "mock", "base_url": "http://h/v1"}, "name", "valid"),
        ("/api/v1/providers/", {"name": "x", "kind": "nope", "base_url": "http://h/v1"}, "kind", "valid choice"),
        ("/api/v1/providers/", {"name": "x", "kind": "mock", "base_url": "ftp://h"}, "base_url", "http://"),
        ("/api/v1/providers/", {"name": "x", "kind": "mock", "base_url": "http://h/v1", "credential_env": "9X"},
         "credential_env", "environment variable"),
        ("/api/v1/providers/", {"name": "x", "kind": "mock", "base_url": "http://h/v1", "read_timeout": "0"},
         "read_timeout", "greater than or equal to 0.01"),
        ("/api/v1/routes/", {"name": "other", "aliases": ["gpt4"]}, "aliases", "already a name or alias"),
        ("/api/v1/routes/", {"name": "other", "fallbacks": ["nowhere"]}, "fallbacks", "not a route"),
        ("/api/v1/routes/", {"name": "bad name"}, "name", "not a model name"),
        ("/api/v1/deployments/", {"route": 999999, "provider": 1, "upstream_model": "m"}, "route", "No such route"),
    ],
)  # fmt: skip
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(
    api_client, roles, catalog, url, body, field, message
):
    client = api_client("operator")
    before = {table: rows for table, rows in db_snapshot().items() if table.startswith("gateway.")}
    response = client.post(url, body, content_type=JSON)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == field and message in error["message"], error
    assert {table: rows for table, rows in db_snapshot().items() if table.startswith("gateway.")} == before


def test_fallbacks_that_loop_are_refused(api_client, roles):
    a = route_upsert(name="a")
    route_upsert(name="b")
    client = api_client("operator")
    assert client.patch(f"/api/v1/routes/{a.pk}/", {"fallbacks": ["b"]}, content_type=JSON).status_code == 200
    b = ModelRoute.objects.get(name="b")
    response = client.patch(f"/api/v1/routes/{b.pk}/", {"fallbacks": ["a"]}, content_type=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "These fallbacks make a loop: b → a → b.",
        "field": "fallbacks",
    }


def test_lists_are_paginated_by_cursor(api_client, roles):
    for index in range(5):
        route_upsert(name=f"model-{index}")
    client = api_client("operator")
    first = client.get("/api/v1/routes/?limit=2").json()
    names = [route["name"] for route in first["results"]]
    pages = 1
    url = first["next"]
    while url:
        page = client.get(url).json()
        names += [route["name"] for route in page["results"]]
        url, pages = page["next"], pages + 1
    assert sorted(names) == [f"model-{index}" for index in range(5)] and pages == 3
    assert client.get("/api/v1/routes/?cursor=nonsense").json()["error"]["field"] == "cursor"
    assert client.get("/api/v1/deployments/?route=x").json()["error"]["field"] == "route"


def test_the_connection_test_redacts_the_credential(api_client, roles, mock_upstream):
    provider = provider_upsert(
        name="mock", kind="mock", base_url=mock_upstream.url + "/v1", credential=UPSTREAM_SECRET
    )
    client = api_client("operator")
    url = f"/api/v1/providers/{provider.pk}/test/"
    ok = client.post(url, {"model": "gpt-4.1"}, content_type=JSON).json()
    assert ok["ok"] is True and ok["status"] == 200
    failed = client.post(
        url, {"model": "gpt-4.1", "prompt": "[mock status=503, echo_credential]"}, content_type=JSON
    )
    result = failed.json()
    assert result["ok"] is False and result["status"] == 503 and "[redacted]" in result["answer"]
    assert UPSTREAM_SECRET not in failed.content.decode()
    assert Deployment.objects.count() == 0  # a test changes nothing


def test_a_lone_surrogate_is_a_400_not_a_500(api_client, roles, catalog):
    client = api_client("operator")
    route, provider = catalog["route"].pk, catalog["provider"].pk
    body = f'{{"route": {route}, "provider": {provider}, "upstream_model": "m\\ud800"}}'
    response = client.post("/api/v1/deployments/", body, content_type=JSON)
    assert response.status_code == 400 and response.json()["error"]["field"] == "upstream_model"
    tested = client.post(
        f"/api/v1/providers/{provider}/test/", '{"model": "m", "prompt": "\\udfff"}', content_type=JSON
    )
    assert tested.status_code == 400 and tested.json()["error"]["field"] == "prompt"
    priced = client.post(
        "/api/v1/prices/",
        '{"model": "\\ud800", "input_per_mtok": "1", "cached_input_per_mtok": "1", "output_per_mtok": "1"}',
        content_type=JSON,
    )
    assert priced.status_code == 400 and priced.json()["error"]["field"] == "model"
