"""/account/tokens/: a signed-in user creates personal access tokens (the secret shown once, on the
response to the POST only, no-store) and revokes them; each change is in the audit log of each of
the user's tenants; someone else's token is a 404; the user menu links here."""

from __future__ import annotations

import pytest

from accounts.models import AuditEntry, PersonalAccessToken
from tests.support.api import client_with, token_for

pytestmark = pytest.mark.django_db

PAGE = "/account/tokens/"


def test_it_needs_a_signed_in_user(console_client):
    response = console_client("anonymous").get(PAGE)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert console_client("anonymous").post(PAGE, {"name": "x", "lifetime": "30"}).status_code == 302
    assert not PersonalAccessToken.objects.exists()


def test_the_user_menu_links_here(console_client):
    assert f'href="{PAGE}"' in console_client("viewer").get("/t/acme/").content.decode()


def test_the_empty_page_teaches(console_client):
    html = console_client("viewer").get(PAGE).content.decode()
    assert "No tokens yet" in html and "Acme: viewer" in html


def test_it_creates_a_token_and_shows_its_secret_once(console_client, roles):
    client = console_client("admin")
    response = client.post(PAGE, {"name": "CI deploy", "lifetime": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = PersonalAccessToken.objects.get(user=roles.admin)
    html = response.content.decode()
    raw = next(part for part in html.split('"') if part.startswith(f"thp_{token.prefix}") and len(part) == 56)
    assert token.name == "CI deploy" and token.digest != raw[16:] and raw[16:] not in token.digest
    assert 29 <= (token.expires_at - token.created_at).days <= 30
    # The secret works, and is never shown again (nor kept in the session).
    assert client_with(raw).get("/api/v1/me/").status_code == 200
    assert raw not in client.get(PAGE).content.decode()
    assert raw not in str(dict(client.session))
    # One audit row in the user's tenant, without the secret or the digest.
    entry = AuditEntry.objects.get(action="token.create")
    assert entry.tenant == roles.tenant and entry.actor_user == roles.admin
    assert (
        entry.after["prefix"] == token.prefix
        and raw[16:] not in str(entry.after)
        and "digest" not in entry.after
    )


@pytest.mark.parametrize(
    "form", [{"name": "", "lifetime": "30"}, {"name": "x", "lifetime": "9999"}, {"name": "x"}]
)
def test_bad_input_is_shown_inline_and_stores_nothing(console_client, form):
    response = console_client("member").post(PAGE, form)
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not PersonalAccessToken.objects.exists()


def test_it_revokes_a_token_and_the_api_refuses_it_at_once(console_client, roles):
    raw = token_for(roles.member)
    token = PersonalAccessToken.objects.get(user=roles.member)
    client = console_client("member")
    response = client.post(f"{PAGE}{token.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == PAGE
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert client_with(raw).get("/api/v1/me/").json()["error"]["code"] == "token_revoked"
    assert AuditEntry.objects.filter(action="token.revoke", actor_user=roles.member).count() == 1
    assert "revoked" in client.get(PAGE).content.decode()


def test_someone_elses_token_is_a_404(console_client, roles):
    token_for(roles.owner)
    token = PersonalAccessToken.objects.get(user=roles.owner)
    assert console_client("admin").post(f"{PAGE}{token.pk}/revoke/").status_code == 404
    assert console_client("admin").post(f"{PAGE}nonsense/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert console_client("admin").get(PAGE).content.decode().count(token.prefix) == 0
