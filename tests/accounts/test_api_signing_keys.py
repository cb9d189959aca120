"""/api/v1/tenants/<slug>/signing-keys/: list, add (a generated HS256 secret in that answer only),
deactivate; per way in; another tenant's key is a 404 (accounts/signing.py)."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, SigningKey
from accounts.signing import signing_key_add
from tests.support.api import API_VISITORS
from tests.support.tokens import SECRET

pytestmark = pytest.mark.django_db

KEYS = "/api/v1/tenants/acme/signing-keys/"
DENIED = {"outsider": 404, "operator": 404, "anonymous": 401, "expired": 401, "revoked": 401}


@pytest.mark.parametrize("visitor", API_VISITORS)
def test_it_checks_who_lists_and_adds(api_client, roles, visitor):
    client = api_client(visitor)
    expected = DENIED.get(visitor) or (200 if visitor in ("owner", "admin") else 403)
    assert client.get(KEYS).status_code == expected
    body = {"name": "backend", "issuer": "https://auth.acme.test", "algorithm": "HS256"}
    response = client.post(KEYS, body, content_type="application/json")
    assert response.status_code == (201 if expected == 200 else expected)
    if response.status_code == 201:
        secret = response.json()["secret"]
        assert len(secret) >= 43 and response["Cache-Control"] == "no-store"
        assert SigningKey.objects.get().get_secret() == secret
        assert secret not in client.get(KEYS).content.decode()
        assert AuditEntry.objects.get(action="signing_key.add").actor_user == roles.user(visitor)


def test_a_brought_secret_is_not_echoed_and_deactivation_works(api_client, roles):
    client = api_client("owner")
    response = client.post(
        KEYS,
        {"name": "mine", "issuer": "https://auth.acme.test", "algorithm": "HS256", "secret": SECRET},
        content_type="application/json",
    )
    assert (response.status_code, response.json()["secret"]) == (201, None)
    key_id = response.json()["signing_key"]["id"]
    off = client.post(f"{KEYS}{key_id}/deactivate/")
    assert (off.status_code, off.json()["active"]) == (200, False)
    short = client.post(
        KEYS,
        {"name": "x", "issuer": "https://i.test", "algorithm": "HS256", "secret": "short"},
        content_type="application/json",
    )
    assert (short.status_code, short.json()["error"]["field"]) == (400, "secret")


def test_another_tenants_signing_key_is_a_404(api_client, roles):
    theirs = signing_key_add(
        tenant=roles.other, name="t", issuer="https://globex.test", algorithm="HS256", secret=SECRET
    )
    assert api_client("owner").post(f"{KEYS}{theirs.pk}/deactivate/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.active
