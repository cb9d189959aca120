"""/t/<slug>/audit/: newest first, who / what / before and after, filtered by object type, keyset
pages that neither skip nor repeat a row, the tenant's time zone; owners and admins only; never
another tenant's entries."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from accounts.audit import Actor, audit_record
from accounts.models import AuditEntry
from tests.support.console import EVERY_VISITOR

pytestmark = pytest.mark.django_db

PAGE = "/t/acme/audit/"


def record(tenant, *, action="key.issue", target=None, before=None, after=None, when=None):
    from django.db import transaction

    with transaction.atomic():
        entry = audit_record(
            tenant=tenant,
            actor=Actor.command("test"),
            action=action,
            target=target or tenant,
            before=before,
            after=after,
        )
    if when is not None:
        AuditEntry.objects.filter(pk=entry.pk).update(created_at=when)
    return entry


EXPECTED = {"owner": 200, "admin": 200, "member": 403, "viewer": 403, "outsider": 404}


@pytest.mark.parametrize("visitor", EVERY_VISITOR)
def test_it_checks_access(console_client, roles, visitor):
    record(roles.tenant, action="ours.change")
    record(roles.other, action="theirs.change")
    response = console_client(visitor).get(PAGE)
    if visitor == "anonymous":
        assert response.status_code == 302
        return
    assert response.status_code == EXPECTED[visitor]
    if response.status_code == 200:
        body = response.content.decode()
        assert "ours.change" in body and "theirs.change" not in body
    # The outsider's own audit page never shows acme's entries either.
    if visitor == "outsider":
        assert "ours.change" not in console_client("outsider").get("/t/globex/audit/").content.decode()


def test_it_shows_who_what_and_the_fields_that_changed_in_the_tenant_zone(console_client, roles):
    roles.tenant.timezone = "America/Los_Angeles"
    roles.tenant.save()
    record(
        roles.tenant,
        action="member.role",
        before={"role": "viewer", "email": "v@acme.test"},
        after={"role": "admin", "email": "v@acme.test"},
        when=datetime(2026, 7, 1, 6, 30, tzinfo=UTC),
    )
    body = console_client("owner").get(PAGE).content.decode()
    assert "2026-06-30 23:30:00" in body  # 06:30 UTC is the evening before in Los Angeles
    assert "command:test" in body and "member.role" in body
    changes = re.search(r'member\.role.*?<table class="changes">(.*?)</table>', body, re.S).group(1)
    assert "role" in changes and "viewer" in changes and "admin" in changes
    assert "email" not in changes  # unchanged fields are not listed


def test_it_pages_newest_first_without_gaps_or_repeats(console_client, roles):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # 120 entries, several sharing a timestamp (the id breaks the tie).
    for n in range(120):
        record(roles.tenant, action=f"a.{n:03d}", when=start + timedelta(seconds=n // 3))
    client = console_client("owner")
    seen: list[str] = []
    url = PAGE
    while url:
        body = client.get(url).content.decode()
        seen += re.findall(r"a\.\d{3}", body)
        found = re.search(r'href="\?cursor=([^"]+)">Older', body)
        url = f"{PAGE}?cursor={found.group(1)}" if found else ""
    assert seen == [f"a.{n:03d}" for n in reversed(range(120))]


def test_it_filters_by_object_type(console_client, roles):
    record(roles.tenant, action="tenant.save")  # target: the tenant
    record(roles.tenant, action="member.role", target=roles.tenant.memberships.first())
    body = console_client("owner").get(PAGE + "?type=accounts.membership").content.decode()
    assert "member.role" in body and "tenant.save" not in body


@pytest.mark.parametrize(
    "query",
    ["?type=nope", "?cursor=abc", "?cursor=1_x", "?cursor=" + "9" * 60, "?cursor=99999999999999999999_1"],
)
def test_bad_parameters_are_a_400(console_client, query):
    assert console_client("owner").get(PAGE + query).status_code == 400
