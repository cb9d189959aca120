"""Changes to members, invitations, keys and signing keys made in the Django admin or by a management
command leave audit rows too (who, what, before, after), in the change's transaction: deletes
included, and the owner rule holds in the admin's member inline."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from accounts.members import invitation_create
from accounts.models import ApiKey, AuditEntry, Invitation, Membership, SigningKey
from accounts.services import api_key_issue
from tests.support.manage import call
from tests.support.tokens import SECRET

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(roles):
    return get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


def entries(action):
    return list(AuditEntry.objects.filter(action=action))


def tenant_form(roles, rows):
    tenant = roles.tenant
    data = {
        "name": tenant.name,
        "slug": tenant.slug,
        "plan": tenant.plan_id or "",
        "status": tenant.status,
        "timezone": tenant.timezone,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(len(rows)),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for n, (membership, role, delete) in enumerate(rows):
        data |= {
            f"memberships-{n}-id": str(membership.pk),
            f"memberships-{n}-tenant": str(tenant.pk),
            f"memberships-{n}-user": str(membership.user_id),
            f"memberships-{n}-role": role,
        }
        if delete:
            data[f"memberships-{n}-DELETE"] = "on"
    return data


def test_an_admin_inline_removal_is_recorded(admin_client, roles):
    rows = [
        (m, m.role, m.user == roles.viewer)
        for m in Membership.objects.filter(tenant=roles.tenant).order_by("id")
    ]
    response = admin_client.post(
        f"/admin/accounts/tenant/{roles.tenant.pk}/change/", tenant_form(roles, rows)
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not Membership.objects.filter(user=roles.viewer).exists()
    [entry] = entries("member.remove")
    assert (entry.actor, entry.before, entry.after) == (
        "admin:op@example.com",
        {"user": "viewer@acme.test", "role": "viewer"},
        None,
    )


def test_the_admin_inline_keeps_the_last_owner(admin_client, roles):
    rows = [
        (m, "admin" if m.role == "owner" else m.role, False)
        for m in Membership.objects.filter(tenant=roles.tenant).order_by("id")
    ]
    response = admin_client.post(
        f"/admin/accounts/tenant/{roles.tenant.pk}/change/", tenant_form(roles, rows)
    )
    assert response.status_code == 200 and "needs at least one owner" in response.content.decode()
    assert Membership.objects.get(user=roles.owner).role == "owner" and not entries("member.role")


def test_admin_key_deletes_are_recorded(admin_client, roles):
    one = api_key_issue(tenant=roles.tenant, name="one").api_key
    two = api_key_issue(tenant=roles.tenant, name="two").api_key
    response = admin_client.post(f"/admin/accounts/apikey/{one.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    response = admin_client.post(
        "/admin/accounts/apikey/", {"action": "delete_selected", "_selected_action": [two.pk], "post": "yes"}
    )
    assert response.status_code == 302 and not ApiKey.objects.exists()
    deleted = entries("key.delete")
    assert sorted(e.before["name"] for e in deleted) == ["one", "two"]
    assert all(e.actor == "admin:op@example.com" and e.after is None for e in deleted)


def test_admin_signing_key_changes_are_recorded(admin_client, roles):
    response = admin_client.post(
        "/admin/accounts/signingkey/add/",
        {
            "tenant": roles.tenant.pk,
            "name": "backend",
            "issuer": "https://acme.test",
            "algorithm": "HS256",
            "key_id": "",
            "secret": SECRET,
            "public_key": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    key = SigningKey.objects.get()
    [added] = entries("signing_key.add")
    assert added.actor == "admin:op@example.com" and SECRET not in str(added.after)
    admin_client.post("/admin/accounts/signingkey/", {"action": "deactivate", "_selected_action": [key.pk]})
    assert entries("signing_key.deactivate")[0].after == {"active": False}
    admin_client.post(f"/admin/accounts/signingkey/{key.pk}/delete/", {"post": "yes"})
    [deleted] = entries("signing_key.delete")
    assert not SigningKey.objects.exists() and deleted.before["name"] == "backend"


def test_an_admin_invitation_revoke_is_recorded(admin_client, roles):
    invitation = invitation_create(tenant=roles.tenant, email="new@example.com", role="member")
    response = admin_client.post(
        "/admin/accounts/invitation/", {"action": "revoke", "_selected_action": [invitation.pk]}
    )
    assert response.status_code == 302
    assert Invitation.objects.get().state == "revoked"
    assert entries("invitation.revoke")[0].actor == "admin:op@example.com"
    assert admin_client.get("/admin/accounts/invitation/").status_code == 200


def test_commands_record_what_they_change(roles, tmp_path):
    call("key_issue", "--tenant", "acme", "--name", "ci", "--budget", "5", "--period", "month")
    assert entries("key.issue")[0].actor == "command:key_issue"
    assert entries("budget.create")[0].actor == "command:key_issue"
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    call(
        "signing_key_add",
        "--tenant",
        "acme",
        "--name",
        "backend",
        "--issuer",
        "https://acme.test",
        "--algorithm",
        "HS256",
        "--secret-file",
        str(secret_file),
    )
    [added] = entries("signing_key.add")
    assert added.actor == "command:signing_key_add" and SECRET not in str(added.after)
