"""accounts.access.tenant_page and accounts.selectors.tenant_for_user: the one way into a tenant's
pages. Anonymous → sign-in; not a member → 404 (as for no such tenant); a role lacking the action → 403."""

from __future__ import annotations

import pytest
from django.http import Http404

from accounts.selectors import api_key_for_user, tenant_for_user
from accounts.services import api_key_issue
from tests.support.console import ROLES

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ROLES)
def test_it_lets_every_role_see_the_keys_page(console_client, roles, role):
    response = console_client(role).get("/t/acme/keys/")
    assert response.status_code == 200
    assert response.context["console"]["tenant"] == roles.tenant
    assert response.context["console"]["membership"].role == role
    assert response["Cache-Control"].startswith("max-age=0")
    assert "no-store" in response["Cache-Control"]


def test_it_sends_the_anonymous_to_sign_in_and_back(console_client):
    response = console_client("anonymous").get("/t/acme/keys/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/t/acme/keys/"


def test_it_answers_an_outsider_404_like_a_tenant_that_does_not_exist(console_client):
    outsider = console_client("outsider")
    theirs = outsider.get("/t/acme/keys/")
    nowhere = outsider.get("/t/no-such-tenant/keys/")
    assert theirs.status_code == nowhere.status_code == 404
    assert theirs.content == nowhere.content
    assert b"Acme" not in theirs.content
    # The outsider's own tenant works.
    assert outsider.get("/t/globex/keys/").status_code == 200


def test_it_hides_sections_the_role_may_not_see(console_client):
    owner_nav = [
        item["label"] for item in console_client("owner").get("/t/acme/keys/").context["console"]["nav"]
    ]
    viewer_nav = [
        item["label"] for item in console_client("viewer").get("/t/acme/keys/").context["console"]["nav"]
    ]
    assert "Keys" in owner_nav and "Keys" in viewer_nav
    # Sections not registered yet are left out rather than linking to a 404; audit is for managers.
    assert set(viewer_nav) <= set(owner_nav)


def test_it_shows_the_tenant_switcher_to_a_user_in_several_tenants(console_client, roles):
    from accounts.models import Membership

    Membership.objects.create(tenant=roles.other, user=roles.admin, role="viewer")
    response = console_client("admin").get("/t/acme/keys/")
    others = [m.tenant.slug for m in response.context["console"]["others"]]
    assert others == ["globex"]
    assert b'href="/t/globex/' in response.content


def test_tenant_for_user_refuses_what_is_not_the_users(roles):
    from django.contrib.auth.models import AnonymousUser

    tenant, membership = tenant_for_user(roles.owner, "acme")
    assert (tenant, membership.role) == (roles.tenant, "owner")
    for user, slug in [
        (roles.outsider, "acme"),
        (AnonymousUser(), "acme"),
        (roles.owner, "globex"),
        (roles.owner, "x" * 500),
    ]:
        with pytest.raises(Http404):
            tenant_for_user(user, slug)


def test_api_key_for_user_refuses_another_tenants_key(roles):
    mine = api_key_issue(tenant=roles.tenant, name="mine").api_key
    theirs = api_key_issue(tenant=roles.other, name="theirs").api_key
    assert api_key_for_user(roles.owner, roles.tenant, str(mine.pk)) == mine
    for key_id in (theirs.pk, "abc", "-1", "99999999999999999999999", None):
        with pytest.raises(Http404):
            api_key_for_user(roles.owner, roles.tenant, key_id)
