"""`manage.py key_issue --tenant SLUG [--name] [--models] [--rpm] [--tpm] [--concurrency]
[--budget USD --period P [--soft]] [--expires] [--ips]`."""

from datetime import UTC, datetime
from decimal import Decimal
from ipaddress import ip_network

import pytest
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts import keys
from accounts.models import ApiKey, Plan, Tenant
from accounts.services import tenant_create, tenant_save
from billing.models import Budget
from gateway.auth import _read_key
from gateway.services import route_upsert
from tests.support.manage import call, call_or_refused, one_sentence_error, run
from tests.support.snapshot import db_snapshot
from tests.support.texts import ANY_TEXT, MODEL_ISH, comma_list


@pytest.fixture
def tenant(db):
    route_upsert(name="gpt-4.1", aliases=["gpt4"])  # a key may only be allowed models that exist
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


def test_it_issues_a_key_with_the_response_cache(tenant):
    call("key_issue", "--tenant", "acme", "--cache", "--cache-ttl", "90")
    key = ApiKey.objects.get()
    assert (key.cache, key.cache_ttl) == (True, 90)
    assert _read_key(key.prefix).cache is True and _read_key(key.prefix).cache_ttl == 90


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--cache-ttl", "90"], "--cache-ttl goes with --cache."),
        (["--cache", "--cache-ttl", "0"], "--cache-ttl must be a whole number greater than 0"),
        (["--cache", "--cache-ttl", "99999999"], "--cache-ttl: At most"),
    ],
)
def test_it_refuses_a_bad_cache_ttl(tenant, args, sentence):
    with pytest.raises(CommandError) as failure:
        call("key_issue", "--tenant", "acme", *args)
    assert sentence in str(failure.value)
    assert not ApiKey.objects.exists()


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
        (
            ["--tenant", "acme", "--ips", "10.0.0.1/8"],
            "--ips: 10.0.0.1/8 has host bits set (the range is 10.0.0.0/8): give the range as its network address.",
        ),
        (
            ["--tenant", "acme", "--models", "gpt-4.1,does-not-exist"],
            "--models: No model route or alias is named 'does-not-exist' (GET /v1/models lists them).",
        ),
        (["--tenant", "acme", "--models", "a b"], "--models: 'a b' is not a model name"),
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


# --- budgets, limits within the tenant's (issue 6) ----------------------------------------------------


def test_it_gives_the_key_a_budget_of_its_own(tenant):
    output = call("key_issue", "--tenant", "acme", "--budget", "20.5", "--period", "week")
    key = ApiKey.objects.get()
    budget = Budget.objects.get()
    assert (budget.tenant, budget.scope, budget.api_key) == (tenant, "key", key)
    assert (budget.amount, budget.period, budget.hard) == (Decimal("20.5"), "week", True)
    assert budget.thresholds == [50, 80, 100]
    lines = output.stdout.strip().splitlines()
    assert "With a hard budget of 20.50 USD a week." in output.stdout
    parsed = keys.parse(lines[-1])
    assert parsed is not None and parsed.prefix == key.prefix  # still the raw key alone, last


def test_a_soft_budget_only_alerts(tenant):
    call("key_issue", "--tenant", "acme", "--budget", "1", "--period", "day", "--soft")
    assert Budget.objects.get().hard is False


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["--budget", "20"], "--budget needs --period day, week or month."),
        (["--period", "day"], "--period and --soft go with --budget USD."),
        (["--soft"], "--period and --soft go with --budget USD."),
        (["--budget", "20", "--period", "year"], "--period must be one of day, week, month, not 'year'."),
        (["--budget=-1", "--period", "day"], "--budget must be a number greater than 0"),
        (["--budget", "0", "--period", "day"], "--budget must be a number greater than 0"),
        (["--budget", "NaN", "--period", "day"], "--budget must be a number greater than 0"),
        (["--budget", "Infinity", "--period", "day"], "--budget must be a number greater than 0"),
        (["--budget", "twenty", "--period", "day"], "--budget must be a number greater than 0"),
        (["--budget", "0.0000000001", "--period", "day"], "--budget takes at most 9 decimal places"),
        (["--rpm", "1e3"], "--rpm must be a whole number greater than 0, not '1e3'."),
        (["--rpm", "99999999999"], "--rpm: Ensure this value is less than or equal to 2147483647."),
    ],
)
def test_it_refuses_bad_budget_arguments_and_issues_nothing(tenant, args, sentence):
    before = db_snapshot()
    with pytest.raises(CommandError) as failure:
        call("key_issue", "--tenant", "acme", *args)
    assert sentence in str(failure.value)
    assert "\n" not in str(failure.value)
    assert db_snapshot() == before


@pytest.mark.parametrize(
    ("tenant_limits", "args", "sentence"),
    [
        ({"rpm_limit": 10}, ["--rpm", "11"], "--rpm: A key's rpm limit cannot be looser than its tenant's (11 > 10)."),
        ({"tpm_limit": 1000}, ["--tpm", "1001"], "--tpm: A key's tpm limit cannot be looser than its tenant's (1001 > 1000)."),
        ({"concurrency_limit": 2}, ["--concurrency", "3"], "--concurrency: A key's concurrency limit cannot be looser"),
        ({"plan": "free"}, ["--rpm", "21"], "--rpm: A key's rpm limit cannot be looser than its tenant's (21 > 20)."),
    ],
)  # fmt: skip
def test_it_refuses_a_key_looser_than_its_tenant_with_one_sentence(tenant, tenant_limits, args, sentence):
    if "plan" in tenant_limits:
        tenant.plan = Plan.objects.get(name=tenant_limits["plan"])
    else:
        for name, value in tenant_limits.items():
            setattr(tenant, name, value)
    tenant_save(tenant=tenant)
    before = db_snapshot()
    with pytest.raises(CommandError) as failure:
        call("key_issue", "--tenant", "acme", *args, "--budget", "5", "--period", "day")
    assert str(failure.value) == sentence or str(failure.value).startswith(sentence)
    assert db_snapshot() == before


def test_a_key_as_tight_as_its_tenant_is_issued(tenant):
    tenant.plan = Plan.objects.get(name="free")  # rpm 20, tpm 40000, concurrency 2
    tenant_save(tenant=tenant)
    call("key_issue", "--tenant", "acme", "--rpm", "20", "--tpm", "40000", "--concurrency", "1")
    key = ApiKey.objects.get()
    assert (key.rpm_limit, key.tpm_limit, key.concurrency_limit) == (20, 40000, 1)


def test_after_the_tenant_is_lowered_a_key_at_the_old_limit_is_refused(tenant):
    tenant.rpm_limit = 100
    tenant_save(tenant=tenant)
    call("key_issue", "--tenant", "acme", "--name", "old", "--rpm", "50")
    tenant.rpm_limit = 10  # below the existing key's: allowed, the gateway narrows the key
    tenant_save(tenant=tenant)
    with pytest.raises(CommandError) as failure:
        call("key_issue", "--tenant", "acme", "--name", "new", "--rpm", "50")
    assert str(failure.value) == "--rpm: A key's rpm limit cannot be looser than its tenant's (50 > 10)."
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["old"]


def test_the_key_and_its_budget_are_one_transaction(tenant, monkeypatch):
    from billing import budgets

    def refuse(**kwargs):
        assert ApiKey.objects.filter(pk=kwargs["api_key"].pk).exists()  # the key was written first
        raise ValidationError({"amount": "Refused by the budget service."})

    # The command's service (billing.budgets.api_key_issue_with_budget) writes the key, then the budget.
    monkeypatch.setattr(budgets, "budget_set", refuse)
    with pytest.raises(CommandError) as failure:
        call("key_issue", "--tenant", "acme", "--budget", "5", "--period", "day")
    assert str(failure.value) == "--budget: Refused by the budget service."
    assert not ApiKey.objects.exists() and not Budget.objects.exists()


@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rpm=st.one_of(
        st.text(max_size=30),
        st.integers(min_value=-(10**12), max_value=10**12).map(str),
        st.floats().map(repr),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
    )
)
def test_any_rpm_text_is_stored_exactly_or_refused_with_a_command_error(tenant, rpm):
    before = db_snapshot()
    try:
        call("key_issue", "--tenant", "acme", f"--rpm={rpm}")
    except CommandError as exc:
        assert "\n" not in str(exc)
        assert db_snapshot() == before
        return
    key = ApiKey.objects.get()
    assert key.rpm_limit == int(rpm) >= 1
    key.delete()


CIDR_ISH = st.one_of(
    st.ip_addresses().map(str),
    st.builds(lambda ip, bits: f"{ip}/{bits}", st.ip_addresses(v=4), st.integers(0, 34)),
    st.builds(lambda ip, bits: f"{ip}/{bits}", st.ip_addresses(v=6), st.integers(0, 130)),
    st.ip_addresses().map(lambda ip: f" {ip} "),
    ANY_TEXT,
)


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(st.just("ci"), ANY_TEXT),
    models=st.one_of(
        st.none(),
        ANY_TEXT,
        comma_list(st.sampled_from(["gpt-4.1", "gpt4", " gpt-4.1 ", "does-not-exist", "a b"])),
        comma_list(st.one_of(MODEL_ISH, ANY_TEXT)),
    ),
    ips=st.one_of(st.none(), comma_list(CIDR_ISH)),
)
def test_any_name_models_and_ips_are_stored_as_the_gateway_reads_them_or_refused(tenant, name, models, ips):
    """Issue 12: what key_issue stores, the hot path reads back whole (gateway.auth._read_key): every
    allowed model a route or alias, every allow-list entry a network; anything else is one sentence."""
    args = ["--tenant", "acme", f"--name={name}"]
    args += [] if models is None else [f"--models={models}"]
    args += [] if ips is None else [f"--ips={ips}"]
    output = call_or_refused("key_issue", *args)
    if output is None:
        return
    key = ApiKey.objects.get()
    assert key.name == name
    info = _read_key(key.prefix)
    assert info is not None
    if models is None:
        assert info.allowed_models is None
    else:
        given_models = {item.strip() for item in models.split(",")}
        assert info.allowed_models == frozenset(given_models) <= {"gpt-4.1", "gpt4"}
        assert all(info.model_allowed(model) for model in given_models)
    given_ips = [] if ips is None else [item.strip() for item in ips.split(",")]
    assert [str(network) for network in info.allowed_networks] == key.allowed_ips
    assert {ip_network(item) for item in given_ips} == set(info.allowed_networks)  # strict: as typed
    key.delete()
