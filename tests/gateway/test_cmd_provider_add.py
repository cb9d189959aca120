"""`manage.py provider_add NAME --kind K --base-url URL [--credential-env VAR] [--models a,b] [--read-timeout S]`."""

from decimal import Decimal

import pytest
from django.core.management.base import CommandError

from billing.models import ModelPrice
from gateway.models import Deployment, ModelRoute, Provider
from tests.support.manage import call, one_sentence_error, run

pytestmark = pytest.mark.django_db


def snapshot():
    return (
        list(
            Provider.objects.values_list("name", "kind", "base_url", "credential_encrypted", "read_timeout")
        ),
        list(ModelRoute.objects.values_list("name", flat=True)),
        list(Deployment.objects.values_list("route__name", "provider__name", "upstream_model", "enabled")),
        list(ModelPrice.objects.values_list("model", "input_per_mtok", "output_per_mtok")),
    )


def test_it_registers_a_provider_with_routes_deployments_and_known_prices(monkeypatch):
    monkeypatch.setenv("UPSTREAM_KEY", "gsk_the-real-credential-42")
    output = call(
        "provider_add", "relay", "--kind", "openai-compatible", "--base-url", "http://vllm:8000/v1/",
        "--credential-env", "UPSTREAM_KEY", "--models", "gpt-4.1,my-finetune", "--read-timeout", "30.5",
    )  # fmt: skip
    provider = Provider.objects.get()
    assert (provider.name, provider.kind, provider.base_url) == (
        "relay",
        "openai-compatible",
        "http://vllm:8000/v1",
    )
    assert provider.get_credential() == "gsk_the-real-credential-42"
    assert provider.read_timeout == Decimal("30.5")
    assert set(Deployment.objects.values_list("route__name", "upstream_model", "provider__name")) == {
        ("gpt-4.1", "gpt-4.1", "relay"),
        ("my-finetune", "my-finetune", "relay"),
    }
    price = ModelPrice.objects.get()
    assert (price.model, price.input_per_mtok, price.output_per_mtok) == ("gpt-4.1", Decimal(2), Decimal(8))
    assert "gsk_the-real-credential-42" not in output.stdout + output.stderr
    # The unknown model is served, but at zero cost: the operator is told so.
    assert "no price is known for 'my-finetune'" in output.stderr
    assert "zero cost" in output.stderr and "gpt-4.1" not in output.stderr


def test_it_updates_a_provider_and_keeps_what_was_not_given(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-first")
    call("provider_add", "openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1",
         "--credential-env", "OPENAI_API_KEY", "--models", "gpt-4.1")  # fmt: skip
    ModelPrice.objects.update(output_per_mtok=Decimal("9.5"))  # the operator's own price
    call("provider_add", "openai", "--kind", "openai", "--base-url", "https://eu.api.openai.com/v1",
         "--models", "gpt-4.1,text-embedding-3-small")  # fmt: skip
    provider = Provider.objects.get()
    assert provider.base_url == "https://eu.api.openai.com/v1" and provider.get_credential() == "sk-first"
    assert Deployment.objects.count() == 2
    assert ModelPrice.objects.get(model="gpt-4.1").output_per_mtok == Decimal("9.5")
    assert ModelPrice.objects.filter(model="text-embedding-3-small").exists()


def test_it_says_when_another_provider_already_serves_a_route(monkeypatch):
    call(
        "provider_add",
        "mock",
        "--kind",
        "mock",
        "--base-url",
        "http://127.0.0.1:8001/v1",
        "--models",
        "gpt-4.1",
    )
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    output = call("provider_add", "openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1",
                  "--credential-env", "OPENAI_API_KEY", "--models", "gpt-4.1")  # fmt: skip
    assert "gpt-4.1 (mock)" in output.stdout


def test_it_registers_the_mock_without_a_credential():
    call(
        "provider_add",
        "mock",
        "--kind",
        "mock",
        "--base-url",
        "http://127.0.0.1:8001/v1",
        "--models",
        "gpt-4.1",
    )
    assert Provider.objects.get().credential_encrypted == ""
    assert ModelPrice.objects.filter(model="gpt-4.1").exists()


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["bad name", "--kind", "mock", "--base-url", "http://m/v1"], "'bad name' is not a valid provider name"),
        (["x", "--kind", "bedrock", "--base-url", "http://m/v1"], "--kind must be one of openai, openai-compatible, openai-responses, anthropic, gemini, mock"),
        (["x", "--kind", "mock", "--base-url", "ftp://m/v1"], "--base-url must be an http(s) URL"),
        (["x", "--kind", "mock", "--base-url", "not a url"], "--base-url must be an http(s) URL"),
        (["x", "--kind", "openai", "--base-url", "https://api.openai.com/v1"], "--kind openai needs a credential"),
        (["x", "--kind", "openai", "--base-url", "https://a/v1", "--credential-env", "TH_UNSET_VAR"],
         "--credential-env names TH_UNSET_VAR, but that environment variable is not set or empty."),
        (["x", "--kind", "mock", "--base-url", "http://m/v1", "--models", "a,,b"], "--models must be a comma-separated list"),
        (["x", "--kind", "mock", "--base-url", "http://m/v1", "--models", "m" * 201], "longer than 200 characters"),
        (["x", "--kind", "mock", "--base-url", "http://m/v1", "--read-timeout", "0"], "--read-timeout must be a number greater than 0"),
        (["x", "--kind", "mock", "--base-url", "http://m/v1", "--read-timeout", "NaN"], "--read-timeout must be a number"),
        (["x", "--kind", "mock", "--base-url", "http://m/v1", "--read-timeout", "1.234"], "at most 2 decimal places"),
        (["x", "--kind", "mock", "--base-url", "http://m/v1", "--read-timeout", "100000"], "at most 9999.99"),
    ],
)  # fmt: skip
def test_it_refuses_bad_arguments_and_changes_nothing(monkeypatch, args, sentence):
    monkeypatch.delenv("TH_UNSET_VAR", raising=False)
    call(
        "provider_add",
        "mock",
        "--kind",
        "mock",
        "--base-url",
        "http://127.0.0.1:8001/v1",
        "--models",
        "gpt-4.1",
    )
    before = snapshot()
    with pytest.raises(CommandError) as failure:
        call("provider_add", *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value)
    assert snapshot() == before


def test_it_exits_1_with_one_sentence_and_no_secret_on_stderr(transactional_db):
    result = run("provider_add", "openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1",
                 "--credential-env", "TH_EMPTY_KEY", env={"TH_EMPTY_KEY": " "})  # fmt: skip
    assert one_sentence_error(result) == (
        "--credential-env names TH_EMPTY_KEY, but that environment variable is not set or empty."
    )
    assert not Provider.objects.exists()


def test_it_takes_the_credential_from_the_environment_not_argv(transactional_db):
    result = run("provider_add", "openai", "--kind", "openai", "--base-url", "https://api.openai.com/v1",
                 "--credential-env", "OPENAI_API_KEY", "--models", "gpt-4.1",
                 env={"OPENAI_API_KEY": "sk-from-the-environment"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert Provider.objects.get().get_credential() == "sk-from-the-environment"
    assert "sk-from-the-environment" not in result.stdout + result.stderr
