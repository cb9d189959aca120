"""/ops/providers/: the providers page, create and edit with write-only credentials (stored, from an
environment variable, cleared), and "test connection" against the mock provider over real HTTP."""

from __future__ import annotations

import logging
import secrets
import socket
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import AuditEntry
from gateway.models import Provider
from gateway.services import deployment_upsert, provider_upsert, route_upsert
from tests.conftest import UPSTREAM_SECRET
from tests.support.operators import NOT_OPERATORS, OPERATORS, fast_passwords, operator_clients
from tests.support.secrets import registry
from tests.support.snapshot import db_snapshot
from tests.support.texts import MODEL_ISH

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]
__all__ = ["fast_passwords"]  # a fixture, used by name

# What a browser can post: any text but lone surrogates (not encodable), NULs and controls included.
TYPED = st.one_of(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=60),
    MODEL_ISH,
    st.sampled_from(
        ["http://h/v1", "https://api.example/v1?x=1", "-1", "1e400", "NaN", "9" * 30, "OPENAI_API_KEY"]
    ),
)


@pytest.fixture
def clients(roles: Any) -> dict[str, Any]:
    return operator_clients(roles)


def new_credential() -> str:
    return registry.credential("sk-test-" + secrets.token_hex(16))


def form(**overrides: Any) -> dict[str, Any]:
    data = {
        "name": "openai-main",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "credential": "",
        "credential_env": "",
        "connect_timeout": "5",
        "first_byte_timeout": "60",
        "read_timeout": "120",
        "total_timeout": "600",
        "enabled": "on",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def every_body(responses: list[Any]) -> str:
    return "\n".join(response.content.decode("utf-8", "replace") for response in responses)


def audit_text() -> str:
    return "\n".join(
        repr((e.actor, e.action, e.object_repr, e.before, e.after)) for e in AuditEntry.objects.all()
    )


# -- access -------------------------------------------------------------------------------------------


def _pages(provider: Provider) -> list[tuple[str, str, dict[str, Any]]]:
    base = f"/ops/providers/{provider.pk}/"
    return [
        ("get", "/ops/providers/", {}),
        ("get", "/ops/providers/new/", {}),
        ("post", "/ops/providers/new/", form(name="made-by-visitor")),
        ("get", base, {}),
        ("post", base, form(name=provider.name, base_url="https://changed.example/v1")),
        ("post", base + "clear-credential/", {}),
        ("post", base + "test/", {"model": "gpt-4.1", "prompt": "hi"}),
    ]


@pytest.mark.parametrize("way", NOT_OPERATORS)
def test_it_is_a_404_for_everyone_but_operators_and_changes_nothing(clients, way):
    provider = provider_upsert(
        name="mock", kind="mock", base_url="http://127.0.0.1:9/v1", credential=new_credential()
    )
    before = db_snapshot()
    for method, url, data in _pages(provider):
        response = getattr(clients[way], method)(url, data)
        assert response.status_code == 404, (way, method, url)
    assert db_snapshot() == before


@pytest.mark.parametrize("way", OPERATORS)
def test_operators_reach_every_page(clients, way):
    provider = provider_upsert(name="mock", kind="mock", base_url="http://127.0.0.1:9/v1")
    for method, url, data in [*_pages(provider)[:2], _pages(provider)[3]]:
        assert getattr(clients[way], method)(url, data).status_code == 200, url


# -- credentials: write-only -------------------------------------------------------------------------


def test_a_stored_credential_is_never_shown_again_nor_audited_nor_logged(clients, caplog):
    caplog.set_level(logging.DEBUG)
    client = clients["operator"]
    credential = new_credential()
    responses = [client.post("/ops/providers/new/", form(credential=credential))]
    assert responses[0].status_code == 302
    provider = Provider.objects.get(name="openai-main")
    assert provider.get_credential() == credential
    url = f"/ops/providers/{provider.pk}/"
    responses += [client.get(responses[0].url), client.get("/ops/providers/"), client.get(url)]
    page = responses[-1].content.decode()
    assert f"stored ••••{credential[-4:]}" in page
    # A blank credential field keeps the stored one.
    responses.append(client.post(url, form(read_timeout="30")))
    provider.refresh_from_db()
    assert provider.read_timeout == Decimal("30") and provider.get_credential() == credential
    # A form refused for another field does not echo the credential back either.
    responses.append(client.post(url, form(credential=credential, base_url="ftp://nope")))
    assert responses[-1].status_code == 400 and "Enter an http://" in responses[-1].content.decode()
    responses.append(client.get(url))

    assert credential not in every_body(responses)
    assert credential[-10:] not in every_body(responses)
    assert credential not in audit_text()
    assert registry.scan(caplog.text) == []
    actions = list(
        AuditEntry.objects.filter(tenant=None).order_by("id").values_list("action", "actor", "tenant")
    )
    assert actions == [
        ("provider.create", "console:oona@ops.test", None),
        ("provider.update", "console:oona@ops.test", None),
    ]
    created = AuditEntry.objects.get(action="provider.create")
    assert created.after["credential"] == f"stored ••••{credential[-4:]}"


def test_clearing_the_credential_is_an_explicit_action(clients):
    credential = new_credential()
    provider = provider_upsert(
        name="p1", kind="openai", base_url="https://api.openai.com/v1", credential=credential
    )
    response = clients["superuser"].post(f"/ops/providers/{provider.pk}/clear-credential/")
    assert response.status_code == 302
    provider.refresh_from_db()
    assert provider.credential_encrypted == "" and provider.get_credential() == ""
    entry = AuditEntry.objects.get(action="provider.update")
    assert entry.before["credential"].startswith("stored ••••") and entry.after["credential"] == "none"
    assert credential not in audit_text()
    page = clients["superuser"].get(f"/ops/providers/{provider.pk}/").content.decode()
    assert "Clear credential" not in page


def test_a_credential_may_come_from_an_environment_variable(clients, monkeypatch):
    client = clients["operator"]
    monkeypatch.delenv("OPS_TEST_PROVIDER_KEY", raising=False)
    response = client.post("/ops/providers/new/", form(credential_env="OPS_TEST_PROVIDER_KEY"))
    assert response.status_code == 302
    provider = Provider.objects.get(name="openai-main")
    assert provider.credential_encrypted == "" and provider.credential_env == "OPS_TEST_PROVIDER_KEY"
    assert (
        "from env OPS_TEST_PROVIDER_KEY (unset in this process)"
        in client.get("/ops/providers/").content.decode()
    )
    value = new_credential()
    monkeypatch.setenv("OPS_TEST_PROVIDER_KEY", value)
    page = client.get("/ops/providers/").content.decode()
    assert "from env OPS_TEST_PROVIDER_KEY (set in this process)" in page and value not in page


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"credential_env": "1BAD-NAME"}, "credential_env", "environment variable"),
        ({"credential": "sk-abcdefgh12345", "credential_env": "OPENAI_API_KEY"}, "credential", "not both"),
        ({"credential": "two words"}, "credential", "printable"),
        ({"base_url": "https://user:pw@host/v1"}, "base_url", "credential field, not in the URL"),
        ({"kind": "nonsense"}, "kind", "Select a valid choice"),
        ({"read_timeout": "0"}, "read_timeout", "more than zero"),
        ({"name": "has space"}, "name", "Enter a valid"),
    ],
)
def test_bad_input_is_an_inline_error_and_changes_nothing(clients, overrides, field, message):
    before = db_snapshot()
    response = clients["operator"].post("/ops/providers/new/", form(**overrides))
    assert response.status_code == 400
    assert message in response.context["form"].errors[field][0]
    assert message.split(",")[0] in response.content.decode().replace("&#x27;", "'")
    assert db_snapshot() == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=TYPED,
    base_url=TYPED,
    env=TYPED,
    timeout=TYPED,
    credential=TYPED,
)
def test_hostile_form_input_never_500s_and_stores_only_valid_rows(
    clients, name, base_url, env, timeout, credential
):
    response = clients["operator"].post(
        "/ops/providers/new/",
        form(name=name, base_url=base_url, credential_env=env, read_timeout=timeout, credential=credential),
    )
    assert response.status_code in (302, 400)
    for provider in Provider.objects.all():
        provider.full_clean()  # whatever was stored is what the gateway can read
    Provider.objects.all().delete()
    AuditEntry.objects.all().delete()


# -- test connection ---------------------------------------------------------------------------------


@pytest.fixture
def mock_provider(mock_upstream: Any) -> Provider:
    provider = provider_upsert(
        name="mock", kind="mock", base_url=mock_upstream.url + "/v1", credential=UPSTREAM_SECRET
    )
    deployment_upsert(route=route_upsert(name="gpt-4.1"), provider=provider, upstream_model="gpt-4.1")
    return provider


def test_the_connection_test_shows_the_upstreams_answer(clients, mock_provider, caplog):
    caplog.set_level(logging.INFO)
    url = f"/ops/providers/{mock_provider.pk}/"
    page = clients["operator"].get(url).content.decode()
    assert 'value="gpt-4.1"' in page  # the first deployment's upstream model is proposed
    response = clients["operator"].post(url + "test/", {"model": "gpt-4.1", "prompt": "Say OK"})
    assert response.status_code == 200
    result = response.context["result"]
    assert (
        result.ok and result.status == 200 and '"object":"chat.completion"' in result.answer.replace(" ", "")
    )
    body = response.content.decode()
    assert "Connection test" in body and "upstream status <strong>200</strong>" in body
    assert UPSTREAM_SECRET not in body and registry.scan(caplog.text) == []
    assert "provider connection test: provider=mock model=gpt-4.1 ok=True status=200" in caplog.text


def test_a_failing_upstream_is_reported_with_the_credential_redacted(clients, mock_provider, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"/ops/providers/{mock_provider.pk}/test/"
    # The mock's fault script: a 500 that quotes the credential it was sent.
    response = clients["operator"].post(
        url, {"model": "gpt-4.1", "prompt": "[mock status=500, echo_credential]"}
    )
    result = response.context["result"]
    assert not result.ok and result.status == 500
    assert result.summary == "The upstream provider failed (HTTP 500)."
    assert "mock fault: status 500" in result.answer and "[redacted]" in result.answer
    # A success that quotes it: cut as well.
    echoed = clients["operator"].post(url, {"model": "gpt-4.1", "prompt": "[mock echo_credential]"})
    assert echoed.context["result"].ok and "[redacted]" in echoed.context["result"].answer
    # A wrong credential: the upstream refuses it.
    mock_provider.set_credential(new_credential())
    mock_provider.save()
    refused = clients["operator"].post(url, {"model": "gpt-4.1", "prompt": "hi"})
    assert refused.context["result"].status == 401
    assert refused.context["result"].summary == "The upstream provider refused the gateway's credentials."
    bodies = every_body([response, echoed, refused])
    assert UPSTREAM_SECRET not in bodies and mock_provider.get_credential() not in bodies
    assert UPSTREAM_SECRET[:10] not in bodies
    assert registry.scan(caplog.text) == []


def test_an_unreachable_upstream_is_reported(clients):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = provider_upsert(
        name="gone", kind="openai", base_url=f"http://127.0.0.1:{port}/v1", credential=new_credential()
    )
    response = clients["operator"].post(
        f"/ops/providers/{provider.pk}/test/", {"model": "gpt-4.1", "prompt": ""}
    )
    result = response.context["result"]
    assert not result.ok and result.status == 0
    assert result.summary.startswith("Could not reach the upstream (ConnectError")
    assert provider.get_credential() not in response.content.decode()


def test_the_connection_test_needs_a_model(clients, mock_provider):
    response = clients["operator"].post(
        f"/ops/providers/{mock_provider.pk}/test/", {"model": "", "prompt": ""}
    )
    assert response.status_code == 400 and response.context["result"] is None
    assert "This field is required." in response.content.decode()
