"""The admin saves providers, routes and deployments through gateway.services, which validate
them: a URL, timeout or alias list the gateway cannot use is refused, and nothing is stored."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import provider_upsert, route_upsert

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client):
    client.force_login(get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1"))
    return client


def provider_form(**overrides):
    data = {
        "name": "vllm",
        "kind": "openai-compatible",
        "base_url": "http://vllm:8000/v1",
        "connect_timeout": "5",
        "read_timeout": "120",
        "first_byte_timeout": "60",
        "total_timeout": "600",
        "enabled": "on",
        "credential": "sk-upstream-0123456789",
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("base_url", "ftp://files.example.com/v1", "Enter an http:// or https:// URL"),
        ("base_url", "api.openai.com/v1", "Enter an http:// or https:// URL"),
        ("base_url", "https://api.example.com:99999/v1", "Enter an http:// or https:// URL"),
        ("base_url", "https://user:sk-secret@api.example.com/v1", "not in the URL"),
        ("connect_timeout", "0", "Must be more than zero seconds."),
        ("read_timeout", "-3", "Must be more than zero seconds."),
        ("first_byte_timeout", "0", "Must be more than zero seconds."),
        ("total_timeout", "-1", "Must be more than zero seconds."),
    ],
)
def test_it_refuses_a_provider_the_gateway_cannot_call(operator_client, field, value, error):
    response = operator_client.post("/admin/gateway/provider/add/", provider_form(**{field: value}))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Provider.objects.exists()


def test_it_saves_a_provider_with_any_host_name_and_encrypts_its_credential(operator_client):
    response = operator_client.post("/admin/gateway/provider/add/", provider_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get()
    assert provider.base_url == "http://vllm:8000/v1"
    assert provider.get_credential() == "sk-upstream-0123456789"
    assert "sk-upstream" not in provider.credential_encrypted


def route_form(**overrides):
    data = {
        "name": "gpt-4.1",
        "aliases": '["gpt4"]',
        "strategy": "priority",
        "max_output_tokens": "32768",
        "enabled": "on",
        "deployments-TOTAL_FORMS": "0",
        "deployments-INITIAL_FORMS": "0",
        "deployments-MIN_NUM_FORMS": "0",
        "deployments-MAX_NUM_FORMS": "1000",
    }
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('"gpt4"', "Enter a list of model names"),
        ('["gpt4", 4]', "Enter a list of model names"),
        ('["gpt4", ""]', "Model names cannot be empty."),
    ],
)
def test_it_refuses_aliases_the_catalog_cannot_read(operator_client, value, error):
    response = operator_client.post("/admin/gateway/modelroute/add/", route_form(aliases=value))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not ModelRoute.objects.exists()


def test_it_saves_a_route_and_validates_its_deployments(operator_client):
    provider = provider_upsert(name="mock", kind="mock", base_url="http://127.0.0.1:9/v1")
    deployment = {
        "deployments-TOTAL_FORMS": "1",
        "deployments-0-provider": str(provider.pk),
        "deployments-0-upstream_model": "gpt-4.1",
        "deployments-0-priority": "0",
        "deployments-0-weight": "1",
        "deployments-0-enabled": "on",
    }
    bad = operator_client.post(
        "/admin/gateway/modelroute/add/", route_form(**{**deployment, "deployments-0-weight": "-1"})
    )
    assert bad.status_code == 200 and not ModelRoute.objects.exists()

    good = operator_client.post("/admin/gateway/modelroute/add/", route_form(aliases="", **deployment))
    assert good.status_code == 302, good.content.decode()[:2000]
    assert ModelRoute.objects.get().aliases == []
    assert ModelRoute.objects.get().max_output_tokens == 32768
    assert Deployment.objects.get().upstream_model == "gpt-4.1"


def test_a_route_needs_a_maximum_output_of_at_least_one_token(operator_client):
    response = operator_client.post("/admin/gateway/modelroute/add/", route_form(max_output_tokens="0"))
    assert response.status_code == 200 and not ModelRoute.objects.exists()
    assert "Ensure this value is greater than or equal to 1." in response.content.decode()


def test_the_services_validate_too():
    with pytest.raises(ValidationError):
        provider_upsert(name="x", kind="openai", base_url="file:///etc/passwd")
    with pytest.raises(ValidationError):
        provider_upsert(
            name="x", kind="openai", base_url="https://api.example.com/v1", read_timeout=Decimal(0)
        )
    with pytest.raises(ValidationError):
        provider_upsert(name="x", kind="no-such-kind", base_url="https://api.example.com/v1")
    with pytest.raises(ValidationError):
        route_upsert(name="gpt-4.1", aliases=["gpt4", ""])
    assert not Provider.objects.exists() and not ModelRoute.objects.exists()
