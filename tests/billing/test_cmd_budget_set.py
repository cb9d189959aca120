"""`manage.py budget_set --tenant SLUG [--key PREFIX | --end-user ID] --usd AMOUNT --period P [--soft]
[--thresholds] [--email] [--webhook]`."""

from decimal import Decimal
from ipaddress import ip_network
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Tenant
from accounts.services import api_key_issue, tenant_create
from billing.budgets import budget_set
from billing.models import Budget
from config import egress
from tests.support.dns import fake_dns
from tests.support.manage import call, call_or_refused, one_sentence_error, run
from tests.support.snapshot import db_snapshot
from tests.support.texts import ANY_TEXT, comma_list


@pytest.fixture
def acme(db):
    return tenant_create(name="Acme", slug="acme")


@pytest.fixture
def issued(acme):
    return api_key_issue(tenant=acme, name="ci")


def test_it_sets_a_tenant_budget(acme):
    output = call(
        "budget_set", "--tenant", "acme", "--usd", "250.50", "--period", "month",
        "--thresholds", "80,50,100", "--email", "cfo@acme.test, ops@acme.test",
        "--webhook", "https://hooks.acme.test/budget",
    )  # fmt: skip
    budget = Budget.objects.get()
    assert (budget.tenant, budget.scope, budget.amount, budget.period, budget.hard) == (
        acme,
        "tenant",
        Decimal("250.50"),
        "month",
        True,
    )
    assert budget.thresholds == [50, 80, 100]
    assert budget.emails == ["cfo@acme.test", "ops@acme.test"]
    assert budget.webhook_url == "https://hooks.acme.test/budget"
    assert output.stdout.strip() == (
        f"Budget {budget.pk}: 250.50 USD a month for tenant acme, hard; alerts at 50 %, 80 %, 100 %."
    )


@pytest.mark.parametrize("written", ["th-{prefix}", "{prefix}", "th-{prefix}…", "{raw}", "TH-{upper}"])
def test_it_finds_the_key_by_its_prefix_however_written(issued, written):
    prefix = issued.api_key.prefix
    value = written.format(prefix=prefix, raw=issued.raw, upper=prefix.upper())
    if value.startswith("TH-"):
        value = "th-" + value[3:]
    output = call("budget_set", "--tenant", "acme", "--key", value, "--usd", "5", "--period", "day", "--soft")
    budget = Budget.objects.get()
    assert (budget.scope, budget.api_key, budget.hard) == ("key", issued.api_key, False)
    assert f"key 'ci' (th-{prefix}…) of acme, soft" in output.stdout
    assert issued.raw not in output.stdout


def test_it_sets_end_user_budgets(acme):
    call("budget_set", "--tenant", "acme", "--end-user", "", "--usd", "1", "--period", "day")
    output = call("budget_set", "--tenant", "acme", "--end-user", "user-7", "--usd", "2", "--period", "day")
    assert set(Budget.objects.values_list("scope", "end_user", "amount")) == {
        ("end_user", "", Decimal(1)),
        ("end_user", "user-7", Decimal(2)),
    }
    assert "for end user 'user-7' of acme" in output.stdout


def test_setting_it_again_changes_it_and_keeps_the_alerts_unless_given(acme):
    call("budget_set", "--tenant", "acme", "--usd", "10", "--period", "week", "--email", "a@acme.test")
    first = Budget.objects.get()
    call("budget_set", "--tenant", "acme", "--usd", "20", "--period", "week", "--soft")
    budget = Budget.objects.get()
    assert (budget.pk, budget.amount, budget.hard, budget.emails) == (
        first.pk,
        Decimal(20),
        False,
        ["a@acme.test"],
    )
    call("budget_set", "--tenant", "acme", "--usd", "20", "--period", "week", "--email", "")
    assert Budget.objects.get().emails == []


BAD_ARGUMENTS = [
    (["--tenant", "nope"], "There is no tenant with the slug 'nope'."),
    (["--usd", "-5"], "--usd must be a number greater than 0 and at most 1000000000, not '-5'."),
    (["--usd", "0"], "--usd must be a number greater than 0"),
    (["--usd", "lots"], "--usd must be a number greater than 0"),
    (["--usd", "NaN"], "--usd must be a number greater than 0"),
    (["--usd", "Infinity"], "--usd must be a number greater than 0"),
    (["--usd=-inf"], "--usd must be a number greater than 0"),
    (["--usd", "1.0000000001"], "--usd takes at most 9 decimal places, not '1.0000000001'."),
    (["--usd", "1e10"], "at most 1000000000"),
    (["--period", "year"], "--period must be one of day, week, month, not 'year'."),
    (["--period", "DAY"], "--period must be one of day, week, month"),
    (["--thresholds", "50,eighty"], "--thresholds takes whole numbers separated by commas, not '50,eighty'."),
    (["--thresholds", "50,-80"], "--thresholds takes whole numbers"),
    (["--thresholds", "50.5"], "--thresholds takes whole numbers"),
    (["--thresholds", "50,,80"], "--thresholds must be a comma-separated list without empty items"),
    (["--thresholds", "0,50"], "--thresholds: Enter whole percentages between 1 and 1000"),
    (["--thresholds", "5000"], "--thresholds: Enter whole percentages between 1 and 1000"),
    (["--email", "cfo@acme.test,nobody"], "--email: 'nobody' is not an email address."),
    (["--email", "cfo@acme.test,"], "--email must be a comma-separated list without empty items"),
    (["--webhook", "hooks.acme.test"], "--webhook: The webhook must be an http:// or https:// address."),
    (["--webhook", "ftp://hooks.acme.test/"], "--webhook: The webhook must be an http:// or https://"),
    (["--webhook", "https://exa mple.com"], "--webhook: Enter a valid URL."),
    (["--webhook", "http://169.254.169.254/latest/meta-data/"],
     "--webhook: 169.254.169.254 is a link-local address: webhooks go only to public addresses unless "
     "TOLLHOUSE_WEBHOOK_ALLOW lists it."),
    (["--webhook", "http://127.0.0.1:6379/"], "--webhook: 127.0.0.1 is a loopback address: webhooks go only"),
    (["--webhook", "http://localhost:6379/"], "--webhook: localhost resolves to a loopback address"),
    (["--webhook", "http://[::ffff:10.1.2.3]/"], "--webhook: ::ffff:10.1.2.3 is a private address"),
    (["--webhook", "http://0.0.0.0/"], "--webhook: 0.0.0.0 is an unspecified address"),
    (["--thresholds", "50,101"],
     "--thresholds: A hard budget stops calls at 100 %, so its alerts go up to 100 (not 101); thresholds "
     "above 100 are for soft budgets."),
    (["--key", "nokey0000000"], "There is no key with the prefix th-nokey0000000."),
    (["--key", "short"], "--key takes a key's prefix, 12 letters and digits after th-"),
    (["--key", "th-" + "a" * 60], "--key takes a key's prefix, 12 letters and digits after th- (as key_issue prints it), not that."),
    (["--key", "{globex}"], "belongs to another tenant, not acme."),
    (["--key", "{acme}", "--end-user", "u1"], "Give --key or --end-user, not both"),
    (["--end-user", "u" * 201], "--end-user: Ensure this value has at most 200 characters (it has 201)."),
    (["--end-user", "bad\tname"], "--end-user: An end user is named by printable text."),
    (["--tenant", "ac\x00me"], "--tenant cannot contain a NUL character."),
    (["--webhook", "https://hooks.acme.test/\udcff"], "--webhook is not valid UTF-8 text"),
    (["--email", "\ud800@acme.test"], "--email is not valid UTF-8 text"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "sentence"), BAD_ARGUMENTS)
def test_it_refuses_bad_arguments_and_changes_nothing(acme, args, sentence):
    globex = tenant_create(name="Globex", slug="globex")
    keys = {
        "acme": api_key_issue(tenant=acme, name="ci").api_key.prefix,
        "globex": api_key_issue(tenant=globex, name="ci").api_key.prefix,
    }
    budget_set(tenant=acme, usd=Decimal(100), period="day", emails=["a@acme.test"])
    before = db_snapshot()
    defaults = {"--tenant": "acme", "--usd": "7", "--period": "day"}
    given_args = [arg.format(**keys) for arg in args]
    for option, value in defaults.items():
        if not any(arg == option or arg.startswith(f"{option}=") for arg in given_args):
            given_args += [option, value]
    with pytest.raises(CommandError) as failure:
        call("budget_set", *given_args)
    message = str(failure.value)
    assert sentence in message
    assert "\n" not in message and message.endswith(".")
    assert db_snapshot() == before


def test_a_soft_budget_may_alert_above_100_percent(acme):
    call(
        "budget_set",
        "--tenant",
        "acme",
        "--usd",
        "10",
        "--period",
        "day",
        "--soft",
        "--thresholds",
        "100,150",
    )
    assert Budget.objects.get().thresholds == [100, 150]


def test_it_refuses_a_webhook_to_the_metadata_service_from_the_command_line(transactional_db):
    tenant_create(name="Acme", slug="acme")
    before = db_snapshot()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:6379/"):
        result = run("budget_set", "--tenant", "acme", "--usd", "5", "--period", "day", "--webhook", url)
        assert "webhooks go only to public addresses" in one_sentence_error(result)
        assert result.stdout == ""
    assert db_snapshot() == before


def test_the_operator_may_allow_a_private_webhook(acme, settings):
    settings.TOLLHOUSE_WEBHOOK_ALLOW = (ip_network("10.20.0.0/16"),)
    call(
        "budget_set",
        "--tenant",
        "acme",
        "--usd",
        "5",
        "--period",
        "day",
        "--webhook",
        "http://10.20.3.4/hook",
    )
    assert Budget.objects.get().webhook_url == "http://10.20.3.4/hook"
    with pytest.raises(CommandError) as failure:
        call(
            "budget_set",
            "--tenant",
            "acme",
            "--usd",
            "5",
            "--period",
            "day",
            "--webhook",
            "http://10.21.0.1/",
        )
    assert "10.21.0.1 is a private address" in str(failure.value)


def test_it_never_echoes_a_whole_key_given_as_a_prefix(issued):
    wrong = issued.raw[:-1] + ("A" if issued.raw[-1] != "A" else "B") + "x"  # not a key: one too long
    with pytest.raises(CommandError) as failure:
        call("budget_set", "--tenant", "acme", "--key", wrong, "--usd", "5", "--period", "day")
    assert issued.raw[15:] not in str(failure.value)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amount=st.one_of(
        st.text(max_size=40),
        st.decimals(allow_nan=True, allow_infinity=True).map(str),
        st.floats().map(repr),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.from_regex(r"\A-?[0-9]{0,14}(\.[0-9]{0,12})?([eE][-+]?[0-9]{1,4})?\Z"),
    )
)
def test_any_usd_text_is_stored_exactly_or_refused_with_a_command_error(acme, amount):
    before = db_snapshot()
    try:
        call("budget_set", "--tenant", "acme", f"--usd={amount}", "--period", "day")
    except CommandError as exc:
        assert "\n" not in str(exc)
        assert db_snapshot() == before
        return
    # Accepted: exactly the amount given, at most 9 places, more than 0.
    budget = Budget.objects.get()
    assert budget.amount == Decimal(amount.strip()) > 0
    budget.delete()


def test_it_exits_1_with_one_sentence_on_stderr(transactional_db):
    Tenant.objects.create(name="Acme", slug="acme")
    result = run("budget_set", "--tenant", "acme", "--usd", "1.0000000001", "--period", "day")
    assert one_sentence_error(result) == "--usd takes at most 9 decimal places, not '1.0000000001'."
    assert result.stdout == ""
    assert not Budget.objects.exists()
    result = run("budget_set", "--tenant", "acme", "--usd", "5", "--period", "day")
    assert result.returncode == 0, result.stderr
    assert Budget.objects.get().amount == Decimal(5)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    thresholds=st.one_of(ANY_TEXT, comma_list(st.integers(-5, 1200).map(str)), comma_list(ANY_TEXT)),
    soft=st.booleans(),
)
def test_any_thresholds_text_is_stored_as_the_alerts_read_it_or_refused(acme, thresholds, soft):
    args = ["--tenant", "acme", "--usd", "10", "--period", "day", f"--thresholds={thresholds}"]
    if call_or_refused("budget_set", *args, *(["--soft"] if soft else [])) is None:
        return
    budget = Budget.objects.get()
    given_numbers = sorted({int(item) for item in thresholds.split(",")})
    assert budget.thresholds == given_numbers
    assert given_numbers[0] >= 1 and given_numbers[-1] <= (1000 if soft else 100)
    budget.delete()


WEBHOOK_ISH = st.one_of(
    ANY_TEXT,
    st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https", "HTTP", "ftp"]),
        st.one_of(
            st.ip_addresses(v=4).map(str),
            st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
            st.sampled_from(["localhost", "hooks.acme.test", "metadata.google.internal"]),
        ),
        st.one_of(st.just("/"), st.from_regex(r"\A(:[0-9]{1,5})?/[a-z0-9?=&/]{0,12}\Z")),
    ),
)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(url=WEBHOOK_ISH)
def test_any_webhook_text_is_stored_only_if_it_may_be_sent_to(acme, monkeypatch, url):
    """Issue 12: a stored webhook is an http(s) URL the egress guard lets through (a name that does
    not resolve now is checked when sent); anything else is one sentence and changes nothing."""
    fake_dns(monkeypatch, {"localhost": ["127.0.0.1"], "metadata.google.internal": ["169.254.169.254"]})
    args = ["--tenant", "acme", "--usd", "10", "--period", "day", f"--webhook={url}"]
    if call_or_refused("budget_set", *args) is None:
        return
    budget = Budget.objects.get()
    assert budget.webhook_url == url
    if url:
        assert urlsplit(url).scheme.lower() in {"http", "https"}
        assert egress.url_refusal(url) is None
        httpx.URL(url)  # the sender can address it
    budget.delete()
