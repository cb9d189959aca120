"""In Chromium: a signed-in user creates a personal access token on /account/tokens/ (the secret in
the page once, working against the API), and /api/docs/ renders Swagger UI from our static files
with no JavaScript error and no CSP violation."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_token_is_made_in_the_console_and_the_docs_render(console_page, world, gateway_server):
    page = console_page.page
    console_page.sign_in("alice@acme.test", "pw-alice-123")
    console_page.goto("/t/acme/")
    page.click(".usermenu summary")
    with page.expect_navigation():
        page.click("text=API tokens")
    assert page.url.endswith("/account/tokens/")
    assert "No tokens yet" in page.inner_text("main")
    page.fill("#id_name", "CI deploy")
    page.select_option("#id_lifetime", "30")
    with page.expect_navigation():
        page.click("text=Create token")
    secret = page.input_value("#new-token")
    assert secret.startswith("thp_") and len(secret) == 56
    console_page.screenshot("api-tokens")
    console_page.assert_clean()
    me = httpx.get(f"{gateway_server}/api/v1/me/", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200 and me.json()["memberships"][0]["tenant"] == "acme"
    console_page.goto("/account/tokens/")
    assert secret not in page.content()

    console_page.goto("/api/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    assert page.locator(".swagger-ui .opblock").count() >= 25
    assert "Tollhouse management API" in page.inner_text(".swagger-ui .info")
    console_page.screenshot("api-docs", full_page=False)
    console_page.assert_clean()
