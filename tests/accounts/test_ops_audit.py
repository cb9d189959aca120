"""/ops/audit/ (accounts.views_ops_audit): every tenant's changes, newest first, for operators only
(a superuser or staff in the operators group; everyone else a 404); filtered by tenant, actor,
object type and id, and UTC days; keyset pages that neither skip nor repeat a row; a bad filter or
cursor is an inline error on a 200 page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from accounts.audit import Actor
from accounts.models import ApiKey, AuditEntry
from accounts.permissions import OPERATOR_GROUP
from accounts.services import api_key_issue, api_key_revoke
from billing.budgets import budget_set

pytestmark = pytest.mark.django_db

PAGE = "/ops/audit/"


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("root", "root@ops.test", "pw-root-12345")


@pytest.fixture
def ops(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def staff(name: str, *, operator: bool):
    user = get_user_model().objects.create_user(name, f"{name}@ops.test", "pw-staff-12345", is_staff=True)
    if operator:
        user.groups.add(Group.objects.get(name=OPERATOR_GROUP))
    return user


@pytest.fixture
def changes(roles):
    """Real changes through the services in both tenants, by different actors."""
    key = api_key_issue(tenant=roles.tenant, name="acme-app", actor=Actor.console(roles.owner)).api_key
    api_key_revoke(api_key=key, actor=Actor.console(roles.admin))
    api_key_issue(tenant=roles.other, name="globex-app", actor=Actor.command("key_issue"))
    budget_set(
        tenant=roles.tenant, usd=Decimal(25), period="month", hard=True, actor=Actor.console(roles.owner)
    )
    return key


def shown(response) -> list[tuple[str, str, str]]:
    return [
        (entry.tenant.slug if entry.tenant else "-", entry.action, entry.actor)
        for entry, _ in response.context["entries"]
    ]


def test_it_lets_in_a_superuser_and_staff_of_the_operators_group_only(roles, operator, changes):
    visitors = {
        "superuser": (operator, 200),
        "staff in the operators group": (staff("oper", operator=True), 200),
        "staff outside the group": (staff("clerk", operator=False), 404),
        "tenant owner": (roles.owner, 404),
        "tenant admin": (roles.admin, 404),
        "tenant viewer": (roles.viewer, 404),
        "another tenant's owner": (roles.outsider, 404),
        "anonymous": (None, 404),
    }
    for who, (user, status) in visitors.items():
        client = Client()
        if user is not None:
            client.force_login(user)
        response = client.get(PAGE)
        assert response.status_code == status, who
        assert (b"globex-app" in response.content) == (status == 200), who


def test_it_shows_every_tenants_changes_newest_first_with_before_and_after(ops, roles, changes):
    response = ops.get(PAGE)
    assert response.status_code == 200
    rows = shown(response)
    assert rows[0] == ("acme", "budget.create", f"console:{roles.owner.email}")
    assert ("globex", "key.issue", "command:key_issue") in rows
    assert ("acme", "key.revoke", f"console:{roles.admin.email}") in rows
    html = response.content.decode()
    assert "Globex" in html and "Acme" in html and "accounts.apikey" in html
    revoke = next(changes_ for entry, changes_ in response.context["entries"] if entry.action == "key.revoke")
    assert ("status", "active", "revoked") in revoke
    assert response.context["console"]["nav"][-1]["active"]  # the Audit log entry of the operator nav


def test_it_filters_by_tenant_actor_object_and_day(ops, roles, changes):
    assert {row[0] for row in shown(ops.get(PAGE, {"tenant": "globex"}))} == {"globex"}
    by_actor = shown(ops.get(PAGE, {"actor": roles.admin.email.upper()}))
    assert by_actor == [("acme", "key.revoke", f"console:{roles.admin.email}")]
    by_object = shown(ops.get(PAGE, {"type": "accounts.apikey", "object_id": str(changes.pk)}))
    assert [action for _, action, _ in by_object] == ["key.revoke", "key.issue"]
    assert {row[1] for row in shown(ops.get(PAGE, {"type": "billing.budget"}))} == {"budget.create"}
    # By UTC day: move the revocation two days back; a range of that day shows it alone.
    revoked = AuditEntry.objects.get(action="key.revoke")
    day = datetime.now(UTC) - timedelta(days=2)
    AuditEntry.objects.filter(pk=revoked.pk).update(created_at=day)
    only = shown(ops.get(PAGE, {"first": day.date().isoformat(), "last": day.date().isoformat()}))
    assert [action for _, action, _ in only] == ["key.revoke"]
    assert ("acme", "key.revoke", f"console:{roles.admin.email}") not in shown(
        ops.get(PAGE, {"first": datetime.now(UTC).date().isoformat()})
    )
    assert shown(ops.get(PAGE, {"tenant": "-"})) == []  # the operator's own changes: none yet
    empty = ops.get(PAGE, {"actor": "nobody-at-all"})
    assert "No change matches this filter" in empty.content.decode()


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"tenant": "no-such-tenant"}, "tenant", "No tenant has this slug."),
        ({"type": "DROP TABLE"}, "type", "reads app.model"),
        ({"first": "2026-13-45"}, "first", "Enter a valid date."),
        ({"first": "2026-02-01", "last": "2026-01-01"}, "last", "comes before the first"),
        ({"first": "1900-01-01"}, "first", "between 2000 and 2100"),
        ({"actor": "x" * 201}, "actor", "at most 200 characters"),
        ({"object_id": "a\x00b"}, "object_id", "Null characters are not allowed."),
    ],
)
def test_a_bad_filter_is_an_inline_error_on_a_200_page(ops, changes, query, field, message):
    response = ops.get(PAGE, query)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert message in " ".join(errors[field]), errors
    assert response.context["entries"] == []
    assert "Fix the filter above" in response.content.decode()


def test_a_bad_cursor_is_an_inline_error_showing_the_newest_entries(ops, changes):
    for cursor in ("nonsense", "1_", "9" * 60, "-5_3"):
        response = ops.get(PAGE, {"cursor": cursor})
        assert response.status_code == 200, cursor
        assert "not one this page made" in response.content.decode()
        assert len(response.context["entries"]) == AuditEntry.objects.count()


def test_keyset_pages_neither_skip_nor_repeat_a_row_and_keep_the_filter(ops, roles):
    for number in range(60):
        api_key_issue(tenant=roles.tenant, name=f"k{number}", actor=Actor.command("seed"))
    same_time = datetime(2026, 11, 1, tzinfo=UTC)
    AuditEntry.objects.filter(action="key.issue").update(created_at=same_time)  # ties broken by id
    api_key_issue(tenant=roles.other, name="other", actor=Actor.command("seed"))
    seen, url, pages = [], PAGE + "?tenant=acme&type=accounts.apikey", 0
    while url:
        response = ops.get(url)
        assert response.status_code == 200
        seen += [entry.pk for entry, _ in response.context["entries"]]
        pages += 1
        next_url = response.context["next_url"]
        assert not next_url or ("tenant=acme" in next_url and "type=accounts.apikey" in next_url)
        url = PAGE + next_url if next_url else ""
    expected = list(
        AuditEntry.objects.filter(tenant=roles.tenant, object_type="accounts.apikey")
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
    assert pages == 2 and seen == expected and len(seen) == 60
    assert ApiKey.objects.filter(tenant=roles.other).count() == 1


def test_the_tenant_audit_page_still_shows_only_its_own_tenant(console_client, changes):
    response = console_client("owner").get("/t/acme/audit/")
    assert response.status_code == 200
    assert b"globex-app" not in response.content and b"acme-app" in response.content
