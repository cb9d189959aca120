"""Members in a real browser (Chromium through Playwright): the owner invites someone, the email is in
the outbox, its link opened in a fresh browser context lets the invitee set a password, and they are
signed in as a member of the tenant. Screenshot: docs/screenshots/members.png."""

from __future__ import annotations

import pytest
from django.core import mail

from accounts.audit import Actor
from accounts.members import invitation_create
from accounts.models import Membership
from tests.support.invitations import invitation_link

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a-long-enough-passphrase-7"


def test_an_invitation_from_the_members_page_to_a_signed_in_member(console_page, browser, roles):
    from tests.support.browser import ConsolePage

    owner = console_page
    owner.sign_in("owner@acme.test", roles.password, next_path="/t/acme/members/")
    page = owner.page
    page.fill("#id_email", "nina@example.com")
    page.select_option("#id_role", "member")
    with page.expect_navigation():
        page.click("text=Send invitation")
    assert "Invitation sent to nina@example.com." in page.inner_text(".messages")
    assert page.locator("table.invitations").inner_text().count("nina@example.com") == 1
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["nina@example.com"]
    link, _ = invitation_link(mail.outbox[0])
    owner.assert_clean()

    # The invitee: another browser context, no cookies of the owner's.
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        invitee = ConsolePage(page=context.new_page(), base_url=owner.base_url).watch()
        invitee.goto(link.removeprefix("http://127.0.0.1:8000"))
        assert "Join Acme" in invitee.page.inner_text("h1")
        invitee.page.fill("#id_name", "Nina Novak")
        invitee.page.fill("#id_password1", PASSWORD)
        invitee.page.fill("#id_password2", PASSWORD)
        with invitee.page.expect_navigation():
            invitee.page.click("text=Create account and join")
        assert "/t/acme/" in invitee.page.url
        assert "Welcome to Acme" in invitee.page.inner_text(".messages")
        assert Membership.objects.get(tenant=roles.tenant, user__email="nina@example.com").role == "member"
        # Signed in as the member: the members page lists her, without the owner's forms.
        invitee.goto("/t/acme/members/")
        assert "Nina Novak" in invitee.page.inner_text("table.members")
        assert invitee.page.locator("text=Send invitation").count() == 0
        invitee.assert_clean()
    finally:
        context.close()

    # The owner's page, for the README: members, roles, an open invitation.
    invitation_create(
        tenant=roles.tenant, email="sam@example.com", role="viewer", actor=Actor.console(roles.owner)
    )
    owner.goto("/t/acme/members/")
    owner.screenshot("members")
    owner.assert_clean()

    # The audit log shows what just happened, newest first; the signing-keys page renders cleanly too.
    owner.goto("/t/acme/audit/")
    actions = owner.page.locator("table.audit > tbody > tr .badge").all_inner_texts()
    assert actions[:4] == ["invitation.create", "member.add", "invitation.accept", "invitation.create"]
    owner.goto("/t/acme/signing-keys/")
    owner.page.fill("#id_name", "backend")
    owner.page.fill("#id_issuer", "https://auth.acme.test")
    with owner.page.expect_navigation():
        owner.page.click("text=Add key")
    secret = owner.page.input_value("#signing-secret")
    assert len(secret) >= 48
    owner.assert_clean()
