"""/t/<slug>/signing-keys/: list, add (a generated HS256 secret shown once, on the add response only),
deactivate; per visitor; another tenant's key id is a 404; bad input inline, nothing written; every
change leaves one audit row without the secret."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, SigningKey
from accounts.signing import signing_key_add
from tests.support.console import EVERY_VISITOR
from tests.support.tokens import SECRET, public_pem, rsa_key

pytestmark = pytest.mark.django_db

PAGE = "/t/acme/signing-keys/"
ADD = "/t/acme/signing-keys/add/"
ISSUER = "https://auth.acme.test"


def audited():
    """Audit rows other than the fixtures' own (their tenants and memberships)."""
    return AuditEntry.objects.exclude(action__in=("tenant.create", "member.add"))


def add_form(**overrides):
    return {
        "name": "backend",
        "issuer": ISSUER,
        "algorithm": "HS256",
        "key_id": "",
        "secret": "",
        "public_key": "",
        **overrides,
    }


EXPECTED = {"owner": 200, "admin": 200, "member": 403, "viewer": 403, "outsider": 404}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_the_page(console_client, roles, visitor):
    signing_key_add(
        tenant=roles.other, name="theirs", issuer="https://globex.test", algorithm="HS256", secret=SECRET
    )
    response = console_client(visitor).get(PAGE)
    if visitor == "anonymous":
        assert response.status_code == 302
        return
    assert response.status_code == EXPECTED[visitor]
    assert "https://globex.test" not in response.content.decode()


EXPECTED_ADD = {"owner": 200, "admin": 200, "member": 403, "viewer": 403, "outsider": 404, "anonymous": 302}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_add_and_shows_a_generated_secret_once(console_client, visitor):
    client = console_client(visitor)
    response = client.post(ADD, add_form())
    assert response.status_code == EXPECTED_ADD[visitor]
    if response.status_code != 200:
        assert not SigningKey.objects.exists()
        return
    key = SigningKey.objects.get()
    secret = key.get_secret()
    assert len(secret) >= 48 and secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # Never again: not on the page, not in the audit log.
    assert secret not in client.get(PAGE).content.decode()
    entry = AuditEntry.objects.get(action="signing_key.add")
    assert secret not in str(entry.after) and key.secret_encrypted not in str(entry.after)
    assert entry.after["issuer"] == ISSUER and entry.actor == f"console:{visitor}@acme.test"


def test_a_brought_secret_or_a_public_key_is_not_echoed(console_client):
    client = console_client("owner")
    response = client.post(ADD, add_form(secret=SECRET, key_id="k1"))
    assert response.status_code == 302 and SECRET not in client.get(PAGE).content.decode()
    response = client.post(
        ADD, add_form(name="rsa", algorithm="RS256", public_key=public_pem(rsa_key()), key_id="k2")
    )
    assert response.status_code == 302
    assert (
        SigningKey.objects.count() == 2 and AuditEntry.objects.filter(action="signing_key.add").count() == 2
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (add_form(secret="too-short"), "secret"),
        (add_form(algorithm="RS256"), "public_key"),
        (add_form(algorithm="RS256", public_key="not a key"), "public_key"),
        (add_form(algorithm="none"), "algorithm"),
        (add_form(name=""), "name"),
        (add_form(name="x" * 201), "name"),
        (add_form(issuer="a\x00b"), "issuer"),
        (add_form(issuer="tab\there"), "issuer"),
    ],
)
def test_bad_input_is_refused_inline_and_never_echoes_a_secret(console_client, data, field):
    response = console_client("owner").post(ADD, data)
    assert response.status_code == 400
    body = response.content.decode()
    assert f'id="id_{field}_error"' in body
    if data["secret"]:
        assert data["secret"] not in body
    assert not SigningKey.objects.exists() and not audited().exists()


def test_an_issuer_of_another_tenant_is_refused(console_client, roles):
    signing_key_add(tenant=roles.other, name="theirs", issuer=ISSUER, algorithm="HS256", secret=SECRET)
    response = console_client("owner").post(ADD, add_form())
    assert response.status_code == 400 and "belongs to another tenant" in response.content.decode()


EXPECTED_DEACTIVATE = {
    "owner": 302,
    "admin": 302,
    "member": 403,
    "viewer": 403,
    "outsider": 404,
    "anonymous": 302,
}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access_to_deactivate(console_client, roles, visitor):
    key = signing_key_add(
        tenant=roles.tenant, name="backend", issuer=ISSUER, algorithm="HS256", secret=SECRET
    )
    response = console_client(visitor).post(f"/t/acme/signing-keys/{key.pk}/deactivate/")
    assert response.status_code == EXPECTED_DEACTIVATE[visitor]
    done = visitor in ("owner", "admin")
    assert SigningKey.objects.get().active is not done
    entries = AuditEntry.objects.filter(action="signing_key.deactivate")
    assert entries.count() == (1 if done else 0)
    if done:
        assert (entries[0].before, entries[0].after) == ({"active": True}, {"active": False})


def test_another_tenants_signing_key_is_a_404(console_client, roles):
    theirs = signing_key_add(
        tenant=roles.other, name="theirs", issuer="https://globex.test", algorithm="HS256", secret=SECRET
    )
    assert console_client("owner").post(f"/t/acme/signing-keys/{theirs.pk}/deactivate/").status_code == 404
    assert console_client("owner").post("/t/acme/signing-keys/abc/deactivate/").status_code == 404
    assert SigningKey.objects.get().active
