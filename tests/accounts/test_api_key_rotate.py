"""accounts.services.api_key_rotate: a new secret, the previous one working for a grace period, and
nothing else about the key changing (its id, so its budgets, spend and rate-limit windows)."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import keys
from accounts.audit import Actor
from accounts.models import ApiKey
from accounts.selectors import api_key_by_prefix
from accounts.services import api_key_issue, api_key_revoke, api_key_rotate
from billing.budgets import api_key_issue_with_budget
from billing.models import Budget
from billing.selectors import key_usage_this_period
from tests.support.secrets import registry


def secret_of(raw: str) -> str:
    parsed = keys.parse(raw)
    assert parsed is not None
    return parsed.secret


@pytest.mark.django_db
def test_it_gives_a_new_secret_and_keeps_the_previous_one_for_the_grace(roles):
    issued = api_key_issue(tenant=roles.tenant, name="app")
    key = issued.api_key
    rotated = api_key_rotate(api_key=key, grace=timedelta(hours=1), actor=Actor.console(roles.owner))
    stored = ApiKey.objects.get(pk=key.pk)
    assert rotated.api_key.pk == key.pk and ApiKey.objects.count() == 1
    assert stored.prefix != keys.parse(issued.raw).prefix == stored.previous_prefix
    assert (
        timezone.now() + timedelta(minutes=59)
        < stored.previous_valid_until
        <= timezone.now() + timedelta(hours=1)
    )
    new = api_key_by_prefix(keys.parse(rotated.raw).prefix)
    old = api_key_by_prefix(keys.parse(issued.raw).prefix)
    assert new.api_key.pk == old.api_key.pk == key.pk
    assert keys.matches(secret_of(rotated.raw), new.digest) and new.valid_until is None
    assert keys.matches(secret_of(issued.raw), old.digest) and old.valid_until == stored.previous_valid_until
    assert not keys.matches(secret_of(issued.raw), new.digest)


@pytest.mark.django_db
def test_a_second_rotation_ends_the_first_previous_secret(roles):
    first = api_key_issue(tenant=roles.tenant, name="app")
    second = api_key_rotate(api_key=first.api_key, grace=timedelta(days=1))
    third = api_key_rotate(api_key=second.api_key, grace=timedelta(days=1))
    assert api_key_by_prefix(keys.parse(first.raw).prefix) is None
    assert api_key_by_prefix(keys.parse(second.raw).prefix).valid_until is not None
    assert api_key_by_prefix(keys.parse(third.raw).prefix).valid_until is None


@pytest.mark.django_db
@pytest.mark.parametrize("grace", [timedelta(seconds=-1), timedelta(days=31)])
def test_it_refuses_a_grace_outside_0_to_30_days(roles, grace):
    key = api_key_issue(tenant=roles.tenant, name="app").api_key
    with pytest.raises(ValidationError):
        api_key_rotate(api_key=key, grace=grace)
    assert ApiKey.objects.get(pk=key.pk).previous_prefix is None


@pytest.mark.django_db
def test_revoking_ends_both_secrets(roles):
    key = api_key_issue(tenant=roles.tenant, name="app").api_key
    api_key_rotate(api_key=key, grace=timedelta(days=1))
    api_key_revoke(api_key=ApiKey.objects.get(pk=key.pk))
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.status == "revoked" and stored.previous_valid_until <= timezone.now()
    with pytest.raises(ValidationError):
        api_key_rotate(api_key=stored, grace=timedelta(0))


def sdk(gateway_server: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server + "/v1", api_key=key, max_retries=0, timeout=10)


def ask(gateway_server: str, key: str) -> None:
    sdk(gateway_server, key).chat.completions.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "hi [mock prompt_tokens=100 tokens=20]"}]
    )


@pytest.mark.django_db(transaction=True)
def test_through_the_gateway_both_secrets_work_in_the_grace_and_the_old_one_stops_after(
    gateway_server, world, usage_rows
):
    tenant = world.acme
    issued = api_key_issue_with_budget(
        tenant=tenant, name="rotating", rpm_limit=3, budget_usd=Decimal("5"), budget_period="month"
    )
    old = registry.api_key(issued.raw)
    budget = Budget.objects.get(api_key=issued.api_key)
    ask(gateway_server, old)  # the gateway now holds the old prefix in its cache, as current
    [row] = usage_rows(1)
    spend_before = key_usage_this_period(tenant=tenant, api_keys=[issued.api_key])[issued.api_key.pk]
    assert spend_before.requests == 1 and spend_before.spend == row.cost > 0

    new = registry.api_key(api_key_rotate(api_key=issued.api_key, grace=timedelta(seconds=2)).raw)
    rotated_at = time.monotonic()
    # Same key, same budget, same spend this period.
    after = key_usage_this_period(tenant=tenant, api_keys=[ApiKey.objects.get(pk=issued.api_key.pk)])
    assert (after[issued.api_key.pk].spend, after[issued.api_key.pk].requests) == (spend_before.spend, 1)
    assert Budget.objects.get(api_key_id=issued.api_key.pk).pk == budget.pk

    ask(gateway_server, new)
    ask(gateway_server, old)  # in the grace period
    # The rate window carried over: 3 requests a minute for the key, whichever secret is used.
    with pytest.raises(openai.RateLimitError):
        ask(gateway_server, new)

    rows = usage_rows(4)
    assert {r.api_key_id for r in rows} == {issued.api_key.pk}
    assert key_usage_this_period(tenant=tenant, api_keys=[issued.api_key])[issued.api_key.pk].spend == sum(
        (r.cost for r in rows), Decimal(0)
    )

    time.sleep(max(0.0, 2.2 - (time.monotonic() - rotated_at)))
    # Well within the gateway's cache TTL: the rotation's broadcast dropped the cached old key.
    with pytest.raises(openai.AuthenticationError) as refused:
        ask(gateway_server, old)
    assert refused.value.code == "api_key_rotated"
    with pytest.raises(openai.AuthenticationError) as wrong:
        ask(gateway_server, old[:-1] + ("x" if old[-1] != "x" else "y"))
    assert wrong.value.code == "invalid_api_key"  # a wrong secret is just invalid
