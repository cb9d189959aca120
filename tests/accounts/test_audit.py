"""accounts.audit: every change through the services leaves one audit row, in the same transaction."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.test import Client

from accounts.audit import Actor, audit_record
from accounts.models import AuditEntry
from accounts.services import api_key_issue, api_key_revoke, api_key_save, tenant_save
from billing.budgets import budget_delete, budget_set
from billing.credits import credit_add

pytestmark = pytest.mark.django_db


def entries(tenant, *kinds):
    """The tenant's rows whose action starts with one of `kinds` ("key.", "budget."...), oldest first."""
    return [
        entry
        for entry in AuditEntry.objects.filter(tenant=tenant).order_by("created_at", "id")
        if entry.action.startswith(kinds)
    ]


def test_it_records_issue_change_and_revoke_of_a_key_with_who_did_it(roles):
    actor = Actor.console(roles.owner)
    key = api_key_issue(tenant=roles.tenant, name="ci", rpm_limit=10, actor=actor).api_key
    key.rpm_limit = 5
    api_key_save(api_key=key, actor=actor)
    api_key_revoke(api_key=key, actor=Actor.command("key_revoke"))
    issue, change, revoke = entries(roles.tenant, "key.")
    assert (issue.action, issue.actor, issue.actor_user) == (
        "key.issue",
        "console:owner@acme.test",
        roles.owner,
    )
    assert issue.before is None and issue.after["rpm_limit"] == 10 and issue.after["prefix"] == key.prefix
    assert (change.action, change.before["rpm_limit"], change.after["rpm_limit"]) == ("key.change", 10, 5)
    assert (revoke.action, revoke.actor, revoke.actor_user) == ("key.revoke", "command:key_revoke", None)
    assert revoke.before["status"] == "active" and revoke.after["status"] == "revoked"
    assert issue.object_type == "accounts.apikey" and issue.object_id == str(key.pk)
    # Never the digest, never the secret.
    for entry in (issue, change, revoke):
        assert key.digest not in str(entry.after) + str(entry.before)


def test_a_refused_change_leaves_no_row(roles):
    key = api_key_issue(tenant=roles.tenant, name="ci").api_key
    before = AuditEntry.objects.count()
    key.rpm_limit = -4
    with pytest.raises(ValidationError):
        api_key_save(api_key=key, actor=Actor.console(roles.owner))
    assert AuditEntry.objects.count() == before


def test_a_rolled_back_change_takes_its_row_with_it(roles):
    before = AuditEntry.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        api_key_issue(tenant=roles.tenant, name="doomed", actor=Actor.console(roles.owner))
        raise RuntimeError("the caller's transaction fails after the service")
    assert AuditEntry.objects.count() == before


def test_it_must_run_inside_a_transaction(roles, django_db_blocker):
    key = api_key_issue(tenant=roles.tenant, name="ci").api_key
    connection = transaction.get_connection()
    # pytest-django wraps each test in a transaction; leave it to see the guard.
    saved = connection.in_atomic_block
    connection.in_atomic_block = False
    try:
        with pytest.raises(RuntimeError):
            audit_record(tenant=roles.tenant, actor=None, action="x", target=key, before=None, after=None)
    finally:
        connection.in_atomic_block = saved


def test_it_records_tenant_limits_only_when_they_change(roles):
    tenant = roles.tenant
    count = AuditEntry.objects.filter(action="tenant.change").count()
    tenant_save(tenant=tenant, actor=Actor.admin(roles.owner))
    assert AuditEntry.objects.filter(action="tenant.change").count() == count
    tenant.rpm_limit = 120
    tenant_save(tenant=tenant, actor=Actor.admin(roles.owner))
    entry = AuditEntry.objects.filter(action="tenant.change").latest("id")
    assert (entry.before["rpm_limit"], entry.after["rpm_limit"], entry.actor) == (
        None,
        120,
        "admin:owner@acme.test",
    )


def test_it_records_budgets_and_credits_with_exact_amounts(roles):
    actor = Actor.console(roles.admin)
    budget = budget_set(tenant=roles.tenant, usd=Decimal("12.5"), period="month", actor=actor)
    budget_set(tenant=roles.tenant, usd=Decimal("20.000000001"), period="month", actor=actor)
    credit_add(tenant=roles.tenant, kind="topup", usd=Decimal("3.10"), actor=actor)
    budget_delete(budget=budget, actor=actor)
    actions = [(e.action, e.before, e.after) for e in entries(roles.tenant, "budget.", "credit.")]
    assert actions[0][0] == "budget.create" and actions[0][2]["amount"] == "12.500000000"
    assert actions[1][0] == "budget.change"
    assert (actions[1][1]["amount"], actions[1][2]["amount"]) == ("12.500000000", "20.000000001")
    assert actions[2][0] == "credit.add" and Decimal(actions[2][2]["amount"]) == Decimal("3.10")
    assert actions[3][0] == "budget.delete" and actions[3][2] is None


def test_the_admin_records_its_user(roles, django_user_model):
    operator = django_user_model.objects.create_superuser("op", "op@example.test", "pw-op-12345")
    key = api_key_issue(tenant=roles.tenant, name="ci").api_key
    client = Client()
    client.force_login(operator)
    response = client.post(
        f"/admin/accounts/apikey/{key.pk}/change/",
        {
            "tenant": roles.tenant.pk,
            "name": "renamed",
            "status": "active",
            "allowed_models": "[]",
            "allowed_ips": "[]",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    entry = AuditEntry.objects.filter(action="key.change").latest("id")
    assert (entry.actor, entry.before["name"], entry.after["name"]) == (
        "admin:op@example.test",
        "ci",
        "renamed",
    )


def test_commands_record_themselves(roles):
    call_command("budget_set", "--tenant", "acme", "--usd", "5", "--period", "day", stdout=StringIO())
    assert AuditEntry.objects.filter(action="budget.create").latest("id").actor == "command:budget_set"
