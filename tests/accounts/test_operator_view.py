"""An operator opens a tenant's console without being a member: read-only (the viewer role's
pages; every change 403), a banner saying so, and every visit in the tenant's audit log. An
operator who is a member keeps their own role; staff outside the operators group get nothing."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, Membership
from accounts.services import membership_save
from tests.support import operators as ops_fixtures
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

operators, ops_client, fast_passwords = (
    ops_fixtures.operators,
    ops_fixtures.ops_client,
    ops_fixtures.fast_passwords,
)

BANNER = b"Viewing as operator (read-only)"
# The tenant pages a viewer may see.
VIEW_PAGES = ["/t/acme/", "/t/acme/usage/", "/t/acme/keys/", "/t/acme/budgets/", "/t/acme/credits/"]
# Pages a viewer may not see: 403 for the operator too.
MANAGER_PAGES = [
    "/t/acme/members/",
    "/t/acme/signing-keys/",
    "/t/acme/audit/",
    "/t/acme/usage.csv",
    "/t/acme/keys/new/",
]
# Changes: each refused with 403, changing nothing.
CHANGES = [
    ("/t/acme/keys/new/", {"name": "sneaky"}),
    ("/t/acme/credits/", {"code": "TH-AAAA-BBBB-CCCC-DDDD"}),
    ("/t/acme/budgets/", {"scope": "tenant", "amount": "5", "period": "month", "thresholds": "50"}),
    ("/t/acme/members/invite/", {"email": "x@y.test", "role": "owner"}),
    ("/t/acme/signing-keys/add/", {"name": "k"}),
]


@pytest.fixture(autouse=True)
def _fast(fast_passwords):
    """Many users per test: a cheap hasher (tests/support/operators.py)."""


def visits(tenant):
    return list(
        AuditEntry.objects.filter(tenant=tenant, action="tenant.operator_view").values_list(
            "actor_user", "object_repr"
        )
    )


@pytest.mark.parametrize("way", ["superuser", "operator"])
@pytest.mark.parametrize("path", VIEW_PAGES)
def test_an_operator_sees_a_viewers_pages_with_a_banner_and_each_visit_is_audited(
    ops_client, roles, operators, way, path
):
    response = ops_client(way).get(path)
    assert response.status_code == 200
    assert BANNER in response.content
    assert b"operator \xc2\xb7 read-only" in response.content
    assert visits(roles.tenant) == [(getattr(operators, way).pk, path)]
    entry = AuditEntry.objects.get(action="tenant.operator_view")
    assert (
        entry.after == {"path": path, "method": "GET"}
        and entry.actor == f"console:{getattr(operators, way).email}"
    )


def test_every_visit_writes_a_row(ops_client, roles, operators):
    client = ops_client("operator")
    for _ in range(3):
        assert client.get("/t/acme/keys/").status_code == 200
    assert client.get("/t/globex/").status_code == 200
    assert len(visits(roles.tenant)) == 3 and len(visits(roles.other)) == 1


def test_change_buttons_are_hidden(ops_client, roles):
    keys = ops_client("operator").get("/t/acme/keys/").content
    assert b"Issue a key" not in keys
    credits = ops_client("operator").get("/t/acme/credits/").content
    assert b"Redeem a code" not in credits


@pytest.mark.parametrize("path", MANAGER_PAGES)
def test_pages_a_viewer_may_not_see_are_403(ops_client, roles, path):
    assert ops_client("operator").get(path).status_code == 403


@pytest.mark.parametrize(("path", "data"), CHANGES, ids=[path for path, _ in CHANGES])
def test_every_change_is_refused_and_changes_nothing_but_the_audit_log(ops_client, roles, path, data):
    before = db_snapshot()
    response = ops_client("superuser").post(path, data)
    assert response.status_code == 403
    after = db_snapshot()
    # The one row added is the visit itself.
    assert {k: v for k, v in after.items() if k != "accounts.AuditEntry"} == {
        k: v for k, v in before.items() if k != "accounts.AuditEntry"
    }
    assert len(after["accounts.AuditEntry"]) == len(before["accounts.AuditEntry"]) + 1
    assert AuditEntry.objects.filter(action="tenant.operator_view", object_repr=path).count() == 1


def test_an_operator_who_is_a_member_keeps_their_role_and_is_not_audited_as_a_visitor(
    ops_client, roles, operators
):
    membership_save(membership=Membership(tenant=roles.tenant, user=operators.operator, role="admin"))
    response = ops_client("operator").get("/t/acme/members/")
    assert response.status_code == 200 and BANNER not in response.content
    assert b"Issue a key" in ops_client("operator").get("/t/acme/keys/").content
    assert visits(roles.tenant) == []


@pytest.mark.parametrize("way", ["staff", "outsider"])
def test_staff_outside_the_group_and_outsiders_get_a_404(ops_client, console_client, roles, way):
    client = ops_client("staff") if way == "staff" else console_client("outsider")
    for path in VIEW_PAGES:
        assert client.get(path).status_code == 404
    assert visits(roles.tenant) == []


def test_an_unknown_tenant_is_a_404_for_an_operator_too(ops_client, roles):
    assert ops_client("operator").get("/t/nope/keys/").status_code == 404
    assert not AuditEntry.objects.filter(action="tenant.operator_view").exists()


def test_anonymous_is_sent_to_sign_in(ops_client, roles):
    response = ops_client("anonymous").get("/t/acme/keys/")
    assert response.status_code == 302 and "/login/" in response["Location"]
