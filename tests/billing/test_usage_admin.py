"""The operator sees every call, its tokens and its cost in the admin (until the console exists)."""

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from billing.models import UsageRecord
from billing.services import usage_records_insert
from tests.billing.test_usage_records_save import event

pytestmark = pytest.mark.django_db


def test_it_lists_calls_with_tokens_and_cost_for_the_operator(client):
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")
    usage_records_insert(events=[event("visible-call", prompt_tokens=1234, cost_nanos=2_784_000)])
    client.force_login(operator)
    page = client.get("/admin/billing/usagerecord/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "visible-call" in html and "1234" in html and str(Decimal("0.002784000")) in html


def test_it_shows_a_call_s_dialect_upstream_format_session_and_attempts(client):
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")
    log = [
        {"deployment_id": 7, "status": 503, "duration_us": 1500, "error_type": "upstream_error"},
        {"deployment_id": 8, "status": 200, "duration_us": 90000, "error_type": ""},
    ]
    usage_records_insert(
        events=[
            event(
                "agent-call",
                ingress="anthropic_messages",
                upstream_format="gemini",
                session="claude-code-5f1e",
                attempts=2,
                attempt_log=log,
                cache_write_tokens=321,
                reasoning_tokens=45,
            )
        ]
    )
    client.force_login(operator)
    listing = client.get("/admin/billing/usagerecord/", {"q": "claude-code-5f1e"}).content.decode()
    assert "agent-call" in listing and "anthropic_messages" in listing and "gemini" in listing
    record = UsageRecord.objects.get(request_id="agent-call")
    page = client.get(f"/admin/billing/usagerecord/{record.pk}/change/").content.decode()
    assert "claude-code-5f1e" in page and "upstream_error" in page and "321" in page and "45" in page


def test_it_does_not_let_anyone_edit_usage(client):
    operator = get_user_model().objects.create_superuser("op", "op@example.com", "pw-operator-1")
    client.force_login(operator)
    assert client.get("/admin/billing/usagerecord/add/").status_code == 403


def test_it_keeps_non_staff_out(client):
    user = get_user_model().objects.create_user("member", "m@example.com", "pw-member-12")
    client.force_login(user)
    assert client.get("/admin/billing/usagerecord/").status_code == 302
