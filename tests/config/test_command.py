"""config/command.py: every Tollhouse command refuses text that is not text (bytes that are not UTF-8,
a lone surrogate, NUL) with one sentence and exit status 1, before it changes anything."""

from __future__ import annotations

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from accounts.models import Tenant
from accounts.services import tenant_create
from config.command import OperatorCommand
from tests.support.manage import call, call_or_refused, one_sentence_error, run
from tests.support.snapshot import db_snapshot
from tests.support.texts import ANY_TEXT

OUR_APPS = {"accounts", "billing", "gateway", "config"}
NOT_UTF8 = "\udcff"  # what Python makes of the byte 0xff in argv (PEP 383): the shell's $'\xff'
# A lone surrogate, UTF-8-encoded by a careless tool ($'\xed\xa0\x80'): three such escapes in argv.
LONE_SURROGATE_BYTES = b"\xed\xa0\x80".decode("utf-8", "surrogateescape")


def test_every_command_of_ours_is_an_operator_command():
    ours = {name: app for name, app in get_commands().items() if app in OUR_APPS}
    assert {"tenant_create", "key_issue", "budget_set", "credits_topup", "provider_add", "serve"} <= set(ours)
    for name, app in ours.items():
        assert isinstance(load_command_class(app, name), OperatorCommand), name


@pytest.mark.parametrize(
    ("args", "sentence"),
    [
        (["tenant_create", "acme2", "--name", NOT_UTF8], "--name is not valid UTF-8 text"),
        (["tenant_create", f"x{NOT_UTF8}"], "SLUG is not valid UTF-8 text"),
        (["key_issue", "--tenant", "acme", "--name", LONE_SURROGATE_BYTES], "--name is not valid UTF-8 text"),
        (["provider_add", NOT_UTF8, "--kind", "mock", "--base-url", "http://m/v1"], "NAME is not valid UTF-8"),
        (["provider_add", "m", "--kind", "mock", "--base-url", "http://m/v1", "--models", f"a,{NOT_UTF8}"],
         "--models is not valid UTF-8 text"),
        (["budget_set", "--tenant", "acme", "--usd", "5", "--period", "day", "--webhook", f"https://h.test/{NOT_UTF8}"],
         "--webhook is not valid UTF-8 text"),
        (["credits_topup", "--tenant", "acme", "--usd", "5", "--note", NOT_UTF8], "--note is not valid UTF-8 text"),
    ],
)  # fmt: skip
def test_bytes_that_are_not_utf8_exit_1_with_one_sentence_and_change_nothing(
    transactional_db, args, sentence
):
    tenant_create(name="Acme", slug="acme", prepaid=True)
    before = db_snapshot()
    result = run(*args)
    assert one_sentence_error(result).startswith(sentence)
    assert "(check the shell's quoting and the terminal's encoding)" in result.stderr
    assert result.stdout == ""
    assert db_snapshot() == before


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "nul\x00"])
def test_a_lone_surrogate_or_nul_from_python_is_refused_too(db, text):
    tenant_create(name="Acme", slug="acme")
    before = db_snapshot()
    with pytest.raises(CommandError) as failure:
        call("key_issue", "--tenant", "acme", "--name", text)
    assert str(failure.value).startswith("--name ") and "\n" not in str(failure.value)
    assert db_snapshot() == before


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=ANY_TEXT)
def test_any_tenant_name_is_stored_as_given_or_refused_with_one_sentence(name):
    if call_or_refused("tenant_create", "acme", f"--name={name}") is None:
        return
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.name == name and name.strip()
    tenant.delete()
