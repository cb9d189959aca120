"""/api/v1/tenants/<slug>/members/ and invitations/: list, invite (the link by email only), change a
role with the owner rules, remove, revoke an invitation; per way in; every change audited with the
token's user (accounts/members.py)."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts.models import AuditEntry, Invitation, Membership
from tests.support.api import API_VISITORS

pytestmark = pytest.mark.django_db

BASE = "/api/v1/tenants/acme/"
DENIED = {"outsider": 404, "operator": 404, "anonymous": 401, "expired": 401, "revoked": 401}


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_lists_and_invites(api_client, roles, visitor):
    client = api_client(visitor)
    listed = client.get(f"{BASE}members/")
    assert listed.status_code == DENIED.get(visitor) or (403 if visitor == "viewer" else 200)
    if listed.status_code == 200:
        emails = sorted(member["email"] for member in listed.json()["results"])
        assert emails == sorted(f"{role}@acme.test" for role in ("owner", "admin", "member", "viewer"))
    response = client.post(f"{BASE}invitations/", {"email": "new@acme.test"}, content_type="application/json")
    assert response.status_code == DENIED.get(visitor) or (201 if visitor in ("owner", "admin") else 403)
    assert Invitation.objects.filter(email="new@acme.test").exists() == (response.status_code == 201)


def test_an_invitation_is_emailed_listed_and_revoked(api_client, roles):
    client = api_client("admin")
    response = client.post(
        f"{BASE}invitations/", {"email": "Dana@Acme.test", "role": "viewer"}, content_type="application/json"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["email"], body["role"], body["state"]) == ("dana@acme.test", "viewer", "pending")
    assert len(mail.outbox) == 1 and "token" not in body
    assert [inv["id"] for inv in client.get(f"{BASE}invitations/").json()["results"]] == [body["id"]]
    owner_invite = client.post(
        f"{BASE}invitations/", {"email": "boss@acme.test", "role": "owner"}, content_type="application/json"
    )
    assert (owner_invite.status_code, owner_invite.json()["error"]["field"]) == (400, "role")
    revoked = client.post(f"{BASE}invitations/{body['id']}/revoke/")
    assert (revoked.status_code, revoked.json()["state"]) == (200, "revoked")
    assert client.get(f"{BASE}invitations/").json()["results"] == []
    entries = AuditEntry.objects.filter(object_type="accounts.invitation", actor_user=roles.admin)
    assert sorted(entries.values_list("action", flat=True)) == ["invitation.create", "invitation.revoke"]


def test_roles_follow_the_owner_rules(api_client, roles):
    member = Membership.objects.get(tenant=roles.tenant, user=roles.member)
    owner = Membership.objects.get(tenant=roles.tenant, user=roles.owner)
    admin = api_client("admin")
    changed = admin.patch(f"{BASE}members/{member.pk}/", {"role": "viewer"}, content_type="application/json")
    assert (changed.status_code, changed.json()["role"]) == (200, "viewer")
    refused = admin.patch(f"{BASE}members/{member.pk}/", {"role": "owner"}, content_type="application/json")
    assert (refused.status_code, refused.json()["error"]["field"]) == (400, "role")
    assert admin.delete(f"{BASE}members/{owner.pk}/").status_code == 400  # only an owner removes an owner
    last = api_client("owner").patch(
        f"{BASE}members/{owner.pk}/", {"role": "admin"}, content_type="application/json"
    )
    assert last.status_code == 400  # the tenant keeps an owner
    assert (
        admin.patch(
            f"{BASE}members/{member.pk}/", {"role": "chief"}, content_type="application/json"
        ).status_code
        == 400
    )
    assert admin.delete(f"{BASE}members/{member.pk}/").status_code == 204
    assert not Membership.objects.filter(pk=member.pk).exists()
    entry = AuditEntry.objects.filter(object_type="accounts.membership", actor_user=roles.admin).order_by(
        "id"
    )
    assert list(entry.values_list("action", flat=True)) == ["member.role", "member.remove"]


def test_another_tenants_member_is_a_404(api_client, roles):
    theirs = Membership.objects.get(tenant=roles.other)
    client = api_client("owner")
    assert client.get(f"{BASE}members/{theirs.pk}/").status_code == 404
    assert client.delete(f"{BASE}members/{theirs.pk}/").status_code == 404
    assert Membership.objects.filter(pk=theirs.pk).exists()
