"""Single sign-on through the loopback OpenID provider (tests/support/oidc_provider.py), over real
HTTP: the account, the operator role and the memberships come from the claims; every token that is
not exactly right is refused with a page, and nothing is created."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import AuditEntry, Membership, SsoIdentity
from accounts.permissions import OPERATOR_GROUP, is_operator
from accounts.services import tenant_create
from tests.support import sso
from tests.support.oidc_provider import CLIENT_SECRET

pytestmark = pytest.mark.django_db

User = get_user_model()
EMAIL = "sso.user@acme.test"


def claims(**extra):
    return {"sub": "user-1", "email": EMAIL, "name": "Sso User", **extra}


def sso_user():
    return User.objects.get(email=EMAIL)


@pytest.fixture
def tenants(db):
    """Tenants "acme" and "globex", nobody in them yet (cheaper than `roles`: no passwords to hash)."""

    class Tenants:
        acme = tenant_create(name="Acme", slug="acme")
        globex = tenant_create(name="Globex", slug="globex")

    return Tenants


# --- signing in -----------------------------------------------------------------------------------


def test_it_creates_the_account_and_memberships_from_the_claims(oidc, tenants, caplog):
    oidc.behaviour.claims = claims(tenants=["acme:admin", "globex:viewer", "nope:owner", "acme-ops"])
    client = Client()
    with caplog.at_level(logging.INFO, logger="accounts.sso_sync"):
        response = sso.sign_in(client)
    assert response.status_code == 302 and response["Location"] == "/"

    user = sso_user()
    assert user.username == EMAIL and user.first_name == "Sso User"
    assert not user.has_usable_password()
    assert SsoIdentity.objects.get(user=user).subject == "user-1"
    memberships = {m.tenant.slug: (m.role, m.source) for m in Membership.objects.filter(user=user)}
    assert memberships == {"acme": ("admin", "sso"), "globex": ("viewer", "sso")}
    # The tenant that does not exist and the entry that is not slug:role are skipped, with a log line.
    assert "tenant 'nope', which does not exist" in caplog.text
    assert "'acme-ops' is not slug:role" in caplog.text

    # Signed in: the console opens the first tenant; the admin role there lets them manage keys.
    assert client.get("/").status_code == 302
    assert client.get("/t/acme/members/").status_code == 200
    assert client.get("/t/globex/keys/").status_code == 200
    assert client.get("/t/globex/keys/new/").status_code == 403  # a viewer there

    # Audited in each tenant: the membership added by single sign-on, and the sign-in.
    rows = AuditEntry.objects.filter(tenant=tenants.acme, actor=f"sso:{EMAIL}").order_by("id")
    assert [row.action for row in rows] == ["member.add", "sso.sign_in"]
    assert rows[0].after == {"user": user.pk, "role": "admin"}
    assert rows[1].after == {"user": EMAIL, "role": "admin", "via": "Acme ID"}


def test_it_sends_the_browser_with_state_nonce_pkce_and_the_public_callback(oidc, settings):
    settings.TOLLHOUSE_PUBLIC_URL = "https://tollhouse.example"
    query = sso.query_of(sso.start(Client()))
    assert query["redirect_uri"] == "https://tollhouse.example/oidc/callback/"
    assert query["client_id"] == oidc.client_id and query["response_type"] == "code"
    assert query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32 and len(query["nonce"]) >= 32


def test_it_resyncs_memberships_at_each_sign_in(oidc, tenants):
    initech = tenant_create(name="Initech", slug="initech")
    oidc.behaviour.claims = claims(tenants={"acme": "admin", "globex": "viewer"})
    assert sso.sign_in(Client()).status_code == 302
    user = sso_user()
    # A membership given by hand, which single sign-on must leave alone.
    Membership.objects.create(tenant=initech, user=user, role="member")

    oidc.behaviour.claims = claims(tenants={"acme": "viewer"})
    assert sso.sign_in(Client()).status_code == 302

    memberships = {m.tenant.slug: (m.role, m.source) for m in Membership.objects.filter(user=user)}
    assert memberships == {"acme": ("viewer", "sso"), "initech": ("member", "manual")}
    actions = list(
        AuditEntry.objects.filter(actor=f"sso:{EMAIL}", action__startswith="member.")
        .order_by("id")
        .values_list("tenant__slug", "action")
    )
    assert actions == [
        ("acme", "member.add"),
        ("globex", "member.add"),
        ("acme", "member.role"),
        ("globex", "member.remove"),
    ]
    assert SsoIdentity.objects.filter(user=user).count() == 1


def test_it_leaves_manual_memberships_as_they_are(oidc, roles):
    # The member of acme (a membership made by hand) signs in; the claim says owner, then nothing.
    oidc.behaviour.claims = claims(sub="bob", email=roles.member.email, tenants=["acme:owner"])
    assert sso.sign_in(Client()).status_code == 302
    oidc.behaviour.claims = claims(sub="bob", email=roles.member.email, tenants=[])
    assert sso.sign_in(Client()).status_code == 302
    membership = Membership.objects.get(user=roles.member, tenant=roles.tenant)
    assert (membership.role, membership.source) == ("member", "manual")
    # Linked to the existing account (the address matched): no second account.
    assert SsoIdentity.objects.get(subject="bob").user == roles.member
    assert User.objects.filter(email__iexact=roles.member.email).count() == 1


def test_it_keeps_the_last_owner_when_the_claim_drops_them(oidc, caplog):
    lone = tenant_create(name="Lone", slug="lone")
    oidc.behaviour.claims = claims(tenants=["lone:owner"])
    assert sso.sign_in(Client()).status_code == 302
    oidc.behaviour.claims = claims(tenants=[])
    with caplog.at_level(logging.WARNING, logger="accounts.sso_sync"):
        assert sso.sign_in(Client()).status_code == 302
    assert Membership.objects.get(tenant=lone, user=sso_user()).role == "owner"
    assert "member_remove skipped" in caplog.text and "at least one owner" in caplog.text


def test_the_operator_claim_makes_an_operator_and_takes_it_back(oidc, tenants):
    oidc.behaviour.claims = claims(groups=["staff", "tollhouse-operators"])
    client = Client()
    assert sso.sign_in(client).status_code == 302
    user = sso_user()
    assert user.is_staff and user.groups.filter(name=OPERATOR_GROUP).exists() and is_operator(user)
    assert client.get("/ops/").status_code != 404 or not _ops_pages_exist()

    oidc.behaviour.claims = claims(groups=["staff"])
    assert sso.sign_in(Client()).status_code == 302
    user = sso_user()
    assert not user.is_staff and not is_operator(user)
    assert not user.groups.filter(name=OPERATOR_GROUP).exists()
    # Gateway-wide audit rows (no tenant): each change of the role, and each sign-in of someone in no tenant.
    rows = AuditEntry.objects.filter(tenant=None, actor=f"sso:{EMAIL}").order_by("id")
    assert [row.action for row in rows] == ["operator.grant", "sso.sign_in", "operator.revoke", "sso.sign_in"]
    assert rows[0].after == {"user": EMAIL, "operator": True} and rows[0].object_id == str(user.pk)


def test_the_operator_claim_never_takes_away_a_role_given_by_hand(oidc, tenants):
    from django.contrib.auth.models import Group

    manual = User.objects.create_user("ops-by-hand", "ops@acme.test", is_staff=True)
    manual.groups.add(Group.objects.get_or_create(name=OPERATOR_GROUP)[0])
    oidc.behaviour.claims = claims(sub="ops", email="ops@acme.test", groups=["staff"])
    assert sso.sign_in(Client()).status_code == 302
    manual.refresh_from_db()
    assert is_operator(manual)


def test_an_operator_signed_in_through_sso_reaches_the_operator_pages(oidc):
    if not _ops_pages_exist():
        pytest.skip("no /ops/ page on this branch yet")
    oidc.behaviour.claims = claims(groups=["tollhouse-operators"])
    client = Client()
    assert sso.sign_in(client).status_code == 302
    from accounts.context import ops_home_url

    assert client.get(ops_home_url()).status_code == 200
    # The operator's audit log shows how they became one.
    audit = client.get("/ops/audit/?type=auth.user")
    assert (
        audit.status_code == 200
        and b"operator.grant" in audit.content
        and f"sso:{EMAIL}".encode() in audit.content
    )
    # Without the claim, the same person gets the 404 everyone else gets.
    oidc.behaviour.claims = claims(groups=[])
    other = Client()
    assert sso.sign_in(other).status_code == 302
    assert other.get(ops_home_url()).status_code == 404


def _ops_pages_exist() -> bool:
    from accounts.context import ops_home_url

    return ops_home_url() is not None


def test_next_is_kept_through_the_provider(oidc, tenants):
    oidc.behaviour.claims = claims(tenants=["acme:viewer"])
    response = sso.sign_in(Client(), next_path="/t/acme/keys/")
    assert response.status_code == 302 and response["Location"] == "/t/acme/keys/"


def test_sign_out_ends_the_session(oidc, tenants):
    oidc.behaviour.claims = claims(tenants=["acme:viewer"])
    client = Client()
    assert sso.sign_in(client).status_code == 302
    assert client.get("/t/acme/keys/").status_code == 200
    assert client.post("/logout/").status_code == 302
    response = client.get("/t/acme/keys/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_a_client_secret_is_sent_to_the_token_endpoint_only(oidc, tenants):
    oidc.behaviour.claims = claims()
    client = Client()
    url = sso.start(client)
    assert CLIENT_SECRET not in url
    response = client.get(sso.authorize(url))
    assert response.status_code == 302
    assert CLIENT_SECRET not in response["Location"]
    assert oidc.token_requests[-1]["code_verifier"]  # PKCE: the verifier travels with the code


# --- refused ----------------------------------------------------------------------------------------


def assert_refused(response, sentence, status=403):
    assert response.status_code == status, response.content[:500]
    assert sentence in response.content.decode()
    assert b"Back to the sign-in page" in response.content
    assert not User.objects.filter(email=EMAIL).exists()
    assert not SsoIdentity.objects.exists()
    assert "_auth_user_id" not in response.wsgi_request.session


@pytest.mark.parametrize(
    ("fault", "sentence"),
    [
        ({"audience": "someone-else"}, "issued for another application"),
        ({"audience": ["someone-else", "another"]}, "issued for another application"),
        ({"sign_with_wrong_key": True}, "bad signature"),
        ({"expires_in": -600}, "had expired"),
        ({"nonce": "not-the-nonce-we-sent"}, "nonce mismatch"),
        ({"issuer": "https://evil.example"}, "another issuer"),
    ],
    ids=["audience", "audiences", "signature", "expired", "nonce", "issuer"],
)
def test_a_token_that_is_not_exactly_right_is_refused(oidc, tenants, fault, sentence, caplog):
    oidc.behaviour.claims = claims(tenants=["acme:owner"], groups=["tollhouse-operators"])
    for name, value in fault.items():
        setattr(oidc.behaviour, name, value)
    with caplog.at_level(logging.WARNING, logger="accounts.views_sso"):
        response = sso.sign_in(Client())
    assert_refused(response, sentence)
    assert "sso: sign-in refused: id_token" in caplog.text
    assert not Membership.objects.filter(user__email=EMAIL).exists()


def test_a_token_for_several_audiences_is_taken_when_we_are_its_authorized_party(oidc, tenants):
    oidc.behaviour.claims = claims(azp=oidc.client_id)
    oidc.behaviour.audience = [oidc.client_id, "another"]
    assert sso.sign_in(Client()).status_code == 302
    assert sso_user().email == EMAIL


def test_a_rotated_provider_key_is_fetched_once_and_used(oidc, tenants):
    assert sso.sign_in(Client()).status_code == 302
    assert oidc.requests.count("GET /jwks") == 1
    assert sso.sign_in(Client()).status_code == 302
    assert oidc.requests.count("GET /jwks") == 1  # kept
    previous = (oidc.key, oidc.kid)
    oidc.rotate_key()
    try:
        assert sso.sign_in(Client()).status_code == 302
        assert oidc.requests.count("GET /jwks") == 2  # the unknown kid read the JWKS again, once
        assert oidc.requests.count("GET /.well-known/openid-configuration") == 1
    finally:
        oidc.key, oidc.kid = previous


def test_a_stranger_linking_to_the_callback_with_an_error_signs_nobody_out(oidc, tenants):
    oidc.behaviour.claims = claims(tenants=["acme:viewer"])
    client = Client()
    assert sso.sign_in(client).status_code == 302
    assert client.get("/oidc/callback/?error=access_denied&state=whatever").status_code == 403
    assert client.get("/t/acme/keys/").status_code == 200  # still signed in


def test_a_state_this_browser_never_got_is_refused(oidc, tenants):
    oidc.behaviour.state = "forged-state-0123456789"
    assert_refused(sso.sign_in(Client()), "not started in this browser", status=400)
    assert "POST /token" not in oidc.requests  # the code was never exchanged


def test_a_callback_used_twice_is_refused(oidc, tenants):
    client = Client()
    callback = sso.authorize(sso.start(client))
    assert client.get(callback).status_code == 302
    client.post("/logout/")
    response = client.get(callback)
    assert response.status_code == 400
    assert b"already used" in response.content or b"not started in this browser" in response.content


def test_a_callback_in_another_browser_is_refused(oidc, tenants):
    callback = sso.authorize(sso.start(Client()))
    assert_refused(Client().get(callback), "not started in this browser", status=400)


def test_the_providers_refusal_is_shown(oidc, tenants):
    oidc.behaviour.error = "access_denied"
    assert_refused(sso.sign_in(Client()), "did not sign you in (access_denied)")


def test_an_account_the_provider_has_not_verified_is_not_linked(oidc, roles):
    oidc.behaviour.claims = claims(email=roles.owner.email, email_verified=False)
    response = sso.sign_in(Client())
    assert response.status_code == 403
    assert b"has not verified" in response.content
    assert not SsoIdentity.objects.exists()


def test_a_deactivated_account_is_refused(oidc, tenants):
    oidc.behaviour.claims = claims(tenants=["acme:viewer"])
    assert sso.sign_in(Client()).status_code == 302
    User.objects.filter(email=EMAIL).update(is_active=False)
    response = sso.sign_in(Client())
    assert response.status_code == 403 and b"deactivated" in response.content


def test_no_email_no_account(oidc, tenants):
    oidc.behaviour.claims = {"sub": "no-email"}
    assert_refused(sso.sign_in(Client()), "no usable email address")


def test_an_unreachable_provider_is_a_page_not_a_500(oidc, settings, oidc_provider):
    from tests.support.sso import oidc_settings

    class Closed:
        issuer = "http://127.0.0.1:9"  # the discard port: nothing listens
        client_id = oidc_provider.client_id
        client_secret = oidc_provider.client_secret

    settings.TOLLHOUSE_OIDC = oidc_settings(Closed)  # type: ignore[arg-type]
    response = Client().get("/oidc/authenticate/")
    assert response.status_code == 503
    assert b"could not be reached" in response.content


def test_a_discovery_document_of_another_issuer_is_refused(oidc, settings):
    from dataclasses import replace

    settings.TOLLHOUSE_OIDC = replace(settings.TOLLHOUSE_OIDC, issuer=oidc.issuer + "/")
    response = Client().get("/oidc/authenticate/")
    assert response.status_code == 502
    assert b"misconfigured" in response.content


def test_a_discovery_document_with_a_plain_http_endpoint_is_refused(oidc, monkeypatch):
    document = {**oidc.discovery(), "token_endpoint": "http://tokens.example/token"}
    monkeypatch.setattr(oidc, "discovery", lambda: document)
    response = Client().get("/oidc/authenticate/")
    assert response.status_code == 502 and b"misconfigured" in response.content


def test_failed_callbacks_count_against_the_sign_in_limit(oidc, tenants):
    client = Client()
    for _ in range(10):  # TOLLHOUSE_LOGIN_RATE: 10/m
        assert client.get("/oidc/callback/?code=x&state=y").status_code == 400
    response = client.get("/oidc/callback/?code=x&state=y")
    assert response.status_code == 429 and response["Retry-After"]


# --- off ----------------------------------------------------------------------------------------------


def test_with_sso_off_its_urls_are_404_and_there_is_no_button(db, settings):
    settings.TOLLHOUSE_OIDC = None
    client = Client()
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/?code=x&state=y").status_code == 404
    page = client.get("/login/")
    assert page.status_code == 200 and b"Sign in with" not in page.content


def test_with_sso_on_the_sign_in_page_has_its_button(oidc):
    page = Client().get("/login/?next=/t/acme/keys/")
    assert b'href="/oidc/authenticate/?next=%2Ft%2Facme%2Fkeys%2F"' in page.content
    assert b"Sign in with Acme ID" in page.content


def test_turning_sso_off_ends_its_sessions(oidc, tenants, settings):
    oidc.behaviour.claims = claims(tenants=["acme:viewer"])
    client = Client()
    assert sso.sign_in(client).status_code == 302
    settings.TOLLHOUSE_OIDC = None
    assert client.get("/t/acme/keys/").status_code == 302  # back to the sign-in page


def test_a_password_sign_in_never_asks_the_provider(oidc, roles):
    client = Client()
    response = client.post(
        "/login/?code=x&state=y", {"username": roles.owner.email, "password": roles.password}
    )
    assert response.status_code == 302
    assert oidc.requests == []
