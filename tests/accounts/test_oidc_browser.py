"""Single sign-on in a real browser (Chromium through Playwright) against the loopback provider: the
button on the sign-in page, the round trip through the provider, the console after it, and a refused
token's page — with no JavaScript error and no CSP violation on the way."""

from __future__ import annotations

import pytest

from accounts.models import Membership
from accounts.services import tenant_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_oidc(oidc, console_page, settings):
    # The provider sends the browser back to TOLLHOUSE_PUBLIC_URL + /oidc/callback/: the live server.
    settings.TOLLHOUSE_PUBLIC_URL = console_page.base_url
    tenant_create(name="Acme", slug="acme")
    return oidc


def test_it_signs_in_through_the_provider_and_out_again(live_oidc, console_page):
    live_oidc.behaviour.claims = {
        "sub": "u-7",
        "email": "ines@acme.test",
        "name": "Ines",
        "tenants": ["acme:admin"],
    }
    page = console_page.page
    console_page.goto("/t/acme/keys/")
    assert "/login/?next=/t/acme/keys/" in page.url
    button = page.locator("#sso-sign-in")
    assert button.inner_text() == "Sign in with Acme ID"
    console_page.screenshot("sso-sign-in")
    with page.expect_navigation(url="**/t/acme/keys/"):
        button.click()
    assert page.url == console_page.url("/t/acme/keys/")
    assert "GET /authorize" in live_oidc.requests and "POST /token" in live_oidc.requests
    assert Membership.objects.get(user__email="ines@acme.test").role == "admin"
    page.click(".usermenu summary")
    with page.expect_navigation():
        page.click("text=Sign out")
    assert "/login/" in page.url
    console_page.assert_clean()


def test_a_refused_token_shows_why(live_oidc, console_page):
    live_oidc.behaviour.audience = "another-application"
    page = console_page.page
    console_page.goto("/login/")
    with page.expect_navigation(url="**/oidc/callback/**"):
        page.click("#sso-sign-in")
    assert page.locator("h1").inner_text() == "Single sign-on failed"
    assert "issued for another application" in page.locator(".sso-refused").inner_text()
    console_page.screenshot("sso-refused")
    # The page's own 403 is the only "error" the browser reports; no script error, no CSP violation.
    assert [error for error in console_page.errors if "status of 403" not in error] == []
    assert console_page.csp_violations == []
    assert not Membership.objects.filter(user__email="sso.user@acme.test").exists()
