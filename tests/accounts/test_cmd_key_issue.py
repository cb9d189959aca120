"""`manage.py key_issue --tenant SLUG [--name] [--models] [--rpm] [--tpm] [--concurrency] [--expires] [--ips]`."""

from datetime import UTC, datetime

import pytest
from django.core.management.base import CommandError

from accounts import keys
from accounts.models import ApiKey, Tenant
from accounts.services import tenant_create
from tests.support.manage import call, one_sentence_error, run


@pytest.fixture
def tenant(db):
    return tenant_create(name="Acme", slug="acme")


def test_it_issues_a_key_and_prints_it_alone_on_the_last_line(tenant):
    output = call(
        "key_issue",
        "--tenant", "acme", "--name", "ci", "--models", "gpt-4.1, gpt4",
        "--rpm", "60", "--tpm", "1000", "--concurrency", "2",
        "--expires", "2099-01-31T12:00:00+02:00", "--ips", "10.0.0.0/8,192.168.1.7",
    )  # fmt: skip
    raw = output.stdout.strip().splitlines()[-1]
    key = ApiKey.objects.get()
    parsed = keys.parse(raw)
    assert parsed is not None and parsed.prefix == key.prefix and keys.matches(parsed.secret, key.digest)
    assert (key.tenant, key.name, key.allowed_models) == (tenant, "ci", ["gpt-4.1", "gpt4"])
    assert (key.rpm_limit, key.tpm_limit, key.concurrency_limit) == (60, 1000, 2)
    assert key.expires_at == datetime(2099, 1, 31, 10, 0, tzinfo=UTC)
    assert key.allowed_ips == ["10.0.0.0/8", "192.168.1.7/32"]
    assert raw not in output.stderr


def test_it_reads_a_bare_date_as_midnight_utc_and_defaults_the_rest(tenant):
    call("key_issue", "--tenant", "acme", "--expires", "2099-03-01")
    key = ApiKey.objects.get()
    assert key.expires_at == datetime(2099, 3, 1, tzinfo=UTC)
    assert (key.name, key.allowed_models, key.allowed_ips, key.rpm_limit) == ("default", [], [], None)


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--tenant", "nope"], "There is no tenant with the slug 'nope'."),
        (["--tenant", "acme", "--rpm", "-5"], "--rpm must be a whole number greater than 0, not '-5'."),
        (["--tenant", "acme", "--tpm", "lots"], "--tpm must be a whole number greater than 0"),
        (["--tenant", "acme", "--concurrency", "0"], "--concurrency must be a whole number greater than 0"),
        (["--tenant", "acme", "--expires", "tomorrow"], "--expires must be an ISO 8601 date"),
        (["--tenant", "acme", "--expires", "2099-02-30"], "--expires must be an ISO 8601 date"),
        (["--tenant", "acme", "--expires", "2001-01-01"], "--expires 2001-01-01 is in the past."),
        (["--tenant", "acme", "--ips", "10.0.0.0/33"], "'10.0.0.0/33'"),
        (["--tenant", "acme", "--ips", "10.0.0.1,,"], "--ips must be a comma-separated list"),
        (["--tenant", "acme", "--models", ""], "--models must be a comma-separated list"),
        (["--tenant", "acme", "--name", ""], "--name must not be empty."),
        (["--tenant", "acme", "--name", "n" * 201], "--name is longer than 200 characters."),
    ],
)
def test_it_refuses_bad_arguments_and_issues_nothing(tenant, args, sentence):
    with pytest.raises(CommandError) as failure:
        call("key_issue", *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value)
    assert not ApiKey.objects.exists()


def test_it_exits_1_with_one_sentence_on_stderr(transactional_db):
    Tenant.objects.create(name="Acme", slug="acme")
    result = run("key_issue", "--tenant", "acme", "--rpm", "ten")
    assert one_sentence_error(result) == "--rpm must be a whole number greater than 0, not 'ten'."
    assert result.stdout == ""
    assert not ApiKey.objects.exists()


def test_it_prints_a_working_key_from_the_command_line(transactional_db):
    Tenant.objects.create(name="Acme", slug="acme")
    result = run("key_issue", "--tenant", "acme", "--name", "script")
    assert result.returncode == 0, result.stderr
    raw = result.stdout.strip().splitlines()[-1]
    parsed = keys.parse(raw)
    assert parsed is not None and keys.matches(parsed.secret, ApiKey.objects.get(name="script").digest)
