"""`manage.py demo --key-only`: the key alone on stdout, and never a silently created admin."""

from io import StringIO

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_it_prints_only_the_key_and_says_the_new_admin_password(mock_upstream):
    out, err = StringIO(), StringIO()
    call_command("demo", "--key-only", "--mock-url", mock_upstream.url, stdout=out, stderr=err)
    assert out.getvalue().strip().startswith("th-") and len(out.getvalue().split()) == 1
    assert "Created the admin user 'admin' with password" in err.getvalue()

    out, err = StringIO(), StringIO()
    call_command("demo", "--key-only", "--mock-url", mock_upstream.url, stdout=out, stderr=err)
    assert out.getvalue().strip().startswith("th-") and err.getvalue() == ""


def test_it_prints_the_console_and_its_owner_once_and_gives_the_tenant_a_budget(mock_upstream):
    from django.test import Client

    from accounts.models import AuditEntry, Membership
    from billing.models import Budget

    out = StringIO()
    call_command(
        "demo", "--mock-url", mock_upstream.url, "--gateway-url", "http://127.0.0.1:8123", stdout=out
    )
    text = out.getvalue()
    assert "http://127.0.0.1:8123/login/" in text
    line = next(line for line in text.splitlines() if "owner@demo.localhost" in line)
    password = line.split("password ")[1].split()[0]
    assert "(shown once)" in line

    owner = Membership.objects.get(tenant__slug="demo", user__email="owner@demo.localhost")
    assert owner.role == "owner" and not owner.user.is_staff
    budget = Budget.objects.get(tenant__slug="demo", scope="tenant")
    assert (budget.period, budget.thresholds, budget.emails) == (
        "month",
        [50, 80, 100],
        ["owner@demo.localhost"],
    )
    assert AuditEntry.objects.filter(
        tenant__slug="demo", actor="command:demo", action="budget.create"
    ).exists()

    client = Client()
    assert (
        client.post("/login/", {"username": "owner@demo.localhost", "password": password}).status_code == 302
    )
    assert client.get("/t/demo/keys/").status_code == 200

    # A second run neither shows the password again nor adds a second budget.
    out = StringIO()
    call_command("demo", "--mock-url", mock_upstream.url, stdout=out)
    assert password not in out.getvalue() and "owner@demo.localhost" in out.getvalue()
    assert Budget.objects.filter(tenant__slug="demo", scope="tenant").count() == 1
