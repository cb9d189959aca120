"""accounts.services.personal_token_create / personal_token_revoke: a token always expires (within
MAX_TOKEN_LIFETIME), is stored as prefix + digest, and each change is audited in each of the user's
tenants in the same transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts import tokens
from accounts.audit import Actor
from accounts.models import AuditEntry, PersonalAccessToken
from accounts.services import MAX_TOKEN_LIFETIME, personal_token_create, personal_token_revoke

pytestmark = pytest.mark.django_db


def test_it_stores_only_a_digest(roles):
    issued = personal_token_create(user=roles.owner, name="ci", expires_at=timezone.now() + timedelta(days=1))
    parsed = tokens.parse(issued.raw)
    assert parsed is not None and issued.raw.startswith("thp_")
    token = PersonalAccessToken.objects.get()
    assert token.prefix == parsed.prefix and tokens.matches(parsed.secret, token.digest)
    assert parsed.secret not in token.digest


@pytest.mark.parametrize(
    "expires_at",
    [
        lambda now: now - timedelta(seconds=1),
        lambda now: now + MAX_TOKEN_LIFETIME + timedelta(minutes=1),
        lambda now: datetime(2100, 1, 1),  # naive
    ],
)
def test_it_refuses_an_expiry_in_the_past_too_far_or_naive(roles, expires_at):
    with pytest.raises(ValidationError) as raised:
        personal_token_create(user=roles.owner, name="ci", expires_at=expires_at(timezone.now()))
    assert "expires_at" in raised.value.message_dict
    assert not PersonalAccessToken.objects.exists()


def test_it_refuses_an_empty_name(roles):
    with pytest.raises(ValidationError):
        personal_token_create(user=roles.owner, name="  ", expires_at=timezone.now() + timedelta(days=1))
    assert not PersonalAccessToken.objects.exists()


def test_create_and_revoke_are_audited_in_each_of_the_users_tenants(roles):
    from accounts.models import Membership
    from accounts.services import membership_save

    membership_save(membership=Membership(tenant=roles.other, user=roles.owner, role="viewer"))
    actor = Actor.console(roles.owner)
    issued = personal_token_create(
        user=roles.owner, name="ci", expires_at=timezone.now() + timedelta(days=1), actor=actor
    )
    personal_token_revoke(token=issued.token, actor=actor)
    personal_token_revoke(token=issued.token, actor=actor)  # again: no change, no row
    rows = AuditEntry.objects.filter(object_type="accounts.personalaccesstoken")
    assert sorted((row.tenant.slug, row.action) for row in rows) == [
        ("acme", "token.create"),
        ("acme", "token.revoke"),
        ("globex", "token.create"),
        ("globex", "token.revoke"),
    ]
    assert all(row.actor == "console:owner@acme.test" for row in rows)


def test_an_operator_in_no_tenant_gets_one_gateway_wide_row():
    from django.contrib.auth import get_user_model

    operator = get_user_model().objects.create_superuser("op", "op@ops.test", "pw-op-12345")
    personal_token_create(user=operator, name="ops", expires_at=timezone.now() + timedelta(days=1))
    row = AuditEntry.objects.get(action="token.create")
    assert row.tenant is None and row.object_type == "accounts.personalaccesstoken"
