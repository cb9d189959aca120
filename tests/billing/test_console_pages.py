"""The billing console pages per role (owner, admin, member, viewer, outsider, anonymous), as the
README's permission table says, and one test per way in for another tenant's objects (404)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import AuditEntry
from accounts.services import api_key_issue
from billing.credits import redeem_codes_create
from billing.models import Budget, CreditEntry, UsageRecord
from tests.billing.test_overview import record, save
from tests.support.console import EVERY_VISITOR

pytestmark = pytest.mark.django_db

PAGES = ["/t/acme/", "/t/acme/budgets/", "/t/acme/credits/", "/t/acme/usage/", "/t/acme/latency.json"]


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize("role", EVERY_VISITOR)
def test_every_page_answers_each_role_as_the_table_says(console_client, roles, path, role):
    response = console_client(role).get(path)
    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=")
    elif role == "outsider":
        assert response.status_code == 404
    else:
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]


@pytest.fixture
def seeded(roles):
    key = api_key_issue(tenant=roles.tenant, name="ci").api_key
    now = timezone.now()
    save(
        record(roles.tenant, now - timedelta(hours=1), api_key_id=key.pk, end_user="ann", cost=Decimal("0.5"),
               streamed=True, ttft_ms=Decimal(100), latency_ms=Decimal(600), completion_tokens=50),
        record(roles.tenant, now - timedelta(hours=2), status=429, cost=Decimal(0)),
        record(roles.other, now - timedelta(hours=1), cost=Decimal(9)),
    )  # fmt: skip
    return key


def test_the_overview_shows_the_charts_data_and_tops(console_client, seeded):
    response = console_client("viewer").get("/t/acme/?range=24h")
    body = response.content.decode()
    for chart in ("spend-data", "requests-data", "errors-data", "tokens-data", "latency-data", "speed-data"):
        assert f'id="{chart}"' in body
    assert "ci (th-" in body and "ann" in body
    assert "Make your first call" not in body
    assert response.context["requests"] == "2" and response.context["total_cost"] == Decimal("0.5")
    speed = response.context["charts"]["speed"]["series"][0]["data"]
    assert 100.0 in speed  # 50 tokens in 0.5 s
    # Money reaches the page as exact decimal text, never a float.
    spend = [v for v in response.context["charts"]["spend"]["series"][0]["data"] if v is not None]
    assert all(isinstance(v, str) for v in spend) and sum(Decimal(v) for v in spend) == Decimal("0.5")


def test_the_overview_shows_what_the_response_cache_saved_this_tenant_only(console_client, roles):
    now = timezone.now()
    save(
        record(roles.tenant, now - timedelta(hours=1), cost=Decimal("0.25")),
        record(roles.tenant, now - timedelta(hours=1), cost=Decimal(0), cache_hit=True,
               saved_cost=Decimal("0.25")),
        record(roles.tenant, now - timedelta(hours=3), cost=Decimal(0), cache_hit=True,
               saved_cost=Decimal("0.000000007")),
        record(roles.other, now - timedelta(hours=1), cost=Decimal(0), cache_hit=True, saved_cost=Decimal(9)),
    )  # fmt: skip
    response = console_client("viewer").get("/t/acme/")
    assert response.context["saved_cost"] == Decimal("0.250000007") and response.context["cache_hits"] == 2
    body = response.content.decode()
    assert "Saved by the cache" in body and "2 cache hits" in body
    assert response.context["total_cost"] == Decimal("0.25")


def test_an_empty_tenant_sees_how_to_make_its_first_call(console_client, roles, settings):
    settings.TOLLHOUSE_PUBLIC_URL = "https://gw.example"
    body = console_client("member").get("/t/acme/").content.decode()
    assert "Make your first call" in body
    assert 'OpenAI(base_url="https://gw.example/v1"' in body
    assert "curl https://gw.example/v1/chat/completions" in body
    assert "OPENAI_BASE_URL=https://gw.example/v1" in body and "ANTHROPIC_BASE_URL=https://gw.example" in body
    assert "/t/acme/keys/" in body


def test_a_bad_custom_range_says_why_and_shows_the_last_week(console_client, roles):
    response = console_client("viewer").get("/t/acme/?range=custom&first=2026-05-02&last=2026-05-01")
    assert response.status_code == 200
    assert "before its first day" in response.content.decode()
    assert response.context["span"].preset == "7d"
    for nasty in ("?range=%00", "?first=99999-1-1&range=custom", "?range=custom&first=x&last=y"):
        assert console_client("viewer").get("/t/acme/" + nasty).status_code == 200


def test_the_latency_endpoint_is_per_model_and_per_key_and_404s_another_tenants_key(
    console_client, roles, seeded
):
    client = console_client("viewer")
    data = client.get(f"/t/acme/latency.json?range=24h&key={seeded.pk}").json()
    assert any(v is not None for v in data["latency"]["series"][0]["data"])
    assert (
        client.get("/t/acme/latency.json?range=24h&model=nope").json()["speed"]["series"][0]["data"][-1]
        is None
    )
    theirs = api_key_issue(tenant=roles.other, name="theirs").api_key
    assert client.get(f"/t/acme/latency.json?key={theirs.pk}").status_code == 404
    assert client.get("/t/acme/latency.json?key=-1").status_code == 404


def budget_form(**overrides):
    data = {"scope": "tenant", "amount": "20", "period": "month", "hard": "on", "thresholds": "50, 80, 100",
            "emails": "fin@acme.test", "webhook_url": ""}  # fmt: skip
    data.update(overrides)
    return data


@pytest.mark.parametrize("role", EVERY_VISITOR)
def test_setting_a_budget_is_for_owners_and_admins(console_client, roles, role):
    response = console_client(role).post("/t/acme/budgets/", budget_form())
    expected = {"owner": 302, "admin": 302, "member": 403, "viewer": 403, "outsider": 404, "anonymous": 302}
    assert response.status_code == expected[role]
    made = Budget.objects.filter(tenant=roles.tenant).count()
    assert made == (1 if role in ("owner", "admin") else 0)
    if made:
        assert AuditEntry.objects.filter(action="budget.create", actor_user=roles.user(role)).count() == 1


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("amount", "1.0000000001", "9 decimal places"),
        ("amount", "-5", "more than 0"),
        ("amount", "abc", "number"),
        ("thresholds", "50, x", "whole percentages"),
        ("thresholds", "0", "between 1 and 1000"),
        ("emails", "not-an-email", "not an email address"),
        ("webhook_url", "ftp://x.example/", "http:// or https://"),
        ("webhook_url", "http://127.0.0.1:6379/", "webhooks go only to public addresses"),
        ("webhook_url", "http://169.254.169.254/latest/meta-data/", "webhooks go only to public addresses"),
        ("webhook_url", "http://[::ffff:10.0.0.1]/hook", "webhooks go only to public addresses"),
        ("thresholds", "50, 101", "thresholds above 100 are for soft budgets"),
        ("end_user", "a\x00b", "Null characters"),
        ("scope", "key", "Choose the key"),
    ],
)
def test_a_bad_budget_is_an_inline_error_and_writes_nothing(console_client, roles, field, value, error):
    response = console_client("owner").post("/t/acme/budgets/", budget_form(**{field: value}))
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not Budget.objects.exists() and not AuditEntry.objects.filter(action__startswith="budget").exists()


def test_budgets_of_another_tenant_are_404_for_edit_delete_and_test(console_client, roles):
    theirs = Budget.objects.create(
        tenant=roles.other, amount=Decimal(5), webhook_url="https://hooks.example/x"
    )
    client = console_client("owner")
    assert client.get(f"/t/acme/budgets/?edit={theirs.pk}").status_code == 404
    assert client.post(f"/t/acme/budgets/{theirs.pk}/delete/").status_code == 404
    assert client.post(f"/t/acme/budgets/{theirs.pk}/test-webhook/").status_code == 404
    assert client.post("/t/acme/budgets/x/delete/").status_code == 404
    assert Budget.objects.filter(pk=theirs.pk).exists()


def test_a_key_budget_must_name_a_key_of_this_tenant(console_client, roles):
    theirs = api_key_issue(tenant=roles.other, name="theirs").api_key
    response = console_client("owner").post(
        "/t/acme/budgets/", budget_form(scope="key", api_key=str(theirs.pk))
    )
    assert response.status_code == 400 and not Budget.objects.exists()


def test_delete_and_edit_a_budget_with_audit(console_client, roles):
    client = console_client("admin")
    client.post("/t/acme/budgets/", budget_form())
    budget = Budget.objects.get()
    edit = client.get(f"/t/acme/budgets/?edit={budget.pk}")
    assert edit.context["form"].initial["amount"] == "20" and 'value="20"' in edit.content.decode()
    client.post("/t/acme/budgets/", budget_form(amount="30.5"))
    budget.refresh_from_db()
    assert budget.amount == Decimal("30.5")
    assert console_client("member").post(f"/t/acme/budgets/{budget.pk}/delete/").status_code == 403
    assert client.post(f"/t/acme/budgets/{budget.pk}/delete/").status_code == 302
    assert not Budget.objects.exists()
    assert list(AuditEntry.objects.filter(action__startswith="budget").values_list("action", flat=True).order_by("id")) == [
        "budget.create", "budget.change", "budget.delete"]  # fmt: skip


def test_the_webhook_test_posts_a_signed_test_event(console_client, roles, settings):
    from tests.support.webhooks import LOOPBACK, Receiver

    settings.TOLLHOUSE_WEBHOOK_ALLOW = LOOPBACK  # the receiver is on 127.0.0.1
    with Receiver([204, 500]) as receiver:
        budget = Budget.objects.create(tenant=roles.tenant, amount=Decimal(5), webhook_url=receiver.url)
        response = console_client("owner").post(f"/t/acme/budgets/{budget.pk}/test-webhook/", follow=True)
        assert "Test delivered (HTTP 204)" in response.content.decode()
        ((headers, body),) = receiver.received
        assert headers["x-tollhouse-event"] == "budget.test" and b'"type":"budget.test"' in body
        assert headers["x-tollhouse-signature"].startswith("t=")
        failed = console_client("owner").post(f"/t/acme/budgets/{budget.pk}/test-webhook/", follow=True)
        assert "The test was not delivered: HTTP 500" in failed.content.decode()
        assert "s3cr3t-path" not in failed.content.decode()
    assert console_client("viewer").post(f"/t/acme/budgets/{budget.pk}/test-webhook/").status_code == 403


def test_the_webhook_test_is_refused_for_a_private_address_unless_allowed(console_client, roles):
    from tests.support.webhooks import Receiver

    # Stored before the rule (or allowed then): the button checks the address again when it sends.
    with Receiver([204]) as receiver:
        budget = Budget.objects.create(tenant=roles.tenant, amount=Decimal(5), webhook_url=receiver.url)
        response = console_client("owner").post(f"/t/acme/budgets/{budget.pk}/test-webhook/", follow=True)
        page = response.content.decode()
        assert "The test was not delivered" in page and "webhooks go only to public addresses" in page
        assert receiver.received == []


def test_redeeming_a_code_and_a_wrong_code_reveals_nothing(console_client, roles):
    (code,) = redeem_codes_create(count=1, usd=Decimal("12.5"))
    client = console_client("owner")
    assert client.post("/t/acme/credits/", {"code": code}).status_code == 302
    assert CreditEntry.objects.get(tenant=roles.tenant).amount == Decimal("12.5")
    again = client.post("/t/acme/credits/", {"code": code})
    unknown = client.post("/t/acme/credits/", {"code": "TH-" + "A" * 20})
    for response in (again, unknown):
        assert response.status_code == 400 and "That code cannot be redeemed" in response.content.decode()
    assert console_client("viewer").post("/t/acme/credits/", {"code": code}).status_code == 403
    assert "12.5" in console_client("viewer").get("/t/acme/credits/").content.decode()


def test_wrong_codes_are_throttled_per_tenant(console_client, roles, settings):
    client = console_client("owner")
    statuses = [client.post("/t/acme/credits/", {"code": f"nope-{n}"}).status_code for n in range(12)]
    assert statuses[:10] == [400] * 10 and statuses[10:] == [429, 429]


def test_the_explorer_filters_pages_and_shows_one_call_only_of_its_tenant(console_client, roles, seeded):
    client = console_client("viewer")
    body = client.get("/t/acme/usage/?range=24h").content.decode()
    assert body.count('href="/t/acme/usage/') >= 2
    assert client.get("/t/acme/usage/?range=24h&status=4xx").context["rows"][0][0].status == 429
    assert client.get("/t/acme/usage/?after=garbage").status_code == 200
    mine = UsageRecord.objects.filter(tenant_id=roles.tenant.pk).first()
    theirs = UsageRecord.objects.filter(tenant_id=roles.other.pk).first()
    assert client.get(f"/t/acme/usage/{mine.pk}/").status_code == 200
    assert client.get(f"/t/acme/usage/{theirs.pk}/").status_code == 404
    assert client.get("/t/acme/usage/abc/").status_code == 404
    assert console_client("outsider").get(f"/t/acme/usage/{mine.pk}/").status_code == 404
    assert client.get("/t/acme/usage/?key=999999").status_code == 400  # not a key of the tenant


@pytest.mark.parametrize("role", EVERY_VISITOR)
def test_the_csv_export_per_role(console_client, roles, seeded, role):
    response = console_client(role).get("/t/acme/usage.csv?range=24h")
    expected = {"owner": 200, "admin": 200, "member": 200, "viewer": 403, "outsider": 404, "anonymous": 302}
    assert response.status_code == expected[role]
    if response.status_code == 200:
        assert response["Content-Type"] == "text/csv; charset=utf-8"
        assert response["Content-Disposition"].startswith('attachment; filename="usage-acme-')


@pytest.mark.django_db(transaction=True)
def test_the_csv_streams_the_filtered_range_with_exact_costs(roles, seeded):
    from asgiref.sync import async_to_sync

    async_to_sync(_csv_streams)(roles)


async def _csv_streams(roles):
    import csv
    import io

    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    client = AsyncClient()
    await sync_to_async(client.force_login)(roles.member)
    response = await client.get("/t/acme/usage.csv?range=24h")
    assert response.status_code == 200 and response.streaming
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sorted(row["status"] for row in rows) == ["200", "429"]  # globex's call is not in it
    assert sum(Decimal(row["cost_usd"]) for row in rows) == Decimal("0.5")
    only_ok = await client.get("/t/acme/usage.csv?range=24h&status=success&end_user=ann")
    body = b"".join([chunk async for chunk in only_ok.streaming_content]).decode()
    assert len(list(csv.DictReader(io.StringIO(body)))) == 1
    bad = await client.get("/t/acme/usage.csv?range=custom&first=2026-01-02&last=2026-01-01")
    assert bad.status_code == 400 and "before its first day" in bad.content.decode()
    theirs = await sync_to_async(api_key_issue)(tenant=roles.other, name="x")
    assert (await client.get(f"/t/acme/usage.csv?key={theirs.api_key.pk}")).status_code == 400
    assert (await client.post("/t/acme/usage.csv")).status_code == 405


ALLOWED = {
    "budgets.edit": {"owner", "admin"},
    "credits.redeem": {"owner", "admin"},
    "usage.view": {"owner", "admin", "member", "viewer"},
    "overview.view": {"owner", "admin", "member", "viewer"},
}


@pytest.mark.parametrize("role", EVERY_VISITOR)
@pytest.mark.parametrize("action", ["delete", "test", "redeem", "detail", "latency"])
def test_every_action_answers_each_role_as_the_table_says(console_client, roles, role, action):
    budget = Budget.objects.create(tenant=roles.tenant, amount=Decimal(5))
    save(record(roles.tenant, timezone.now()))
    call = UsageRecord.objects.get()
    permission, method, path, data, ok = {
        "delete": ("budgets.edit", "post", f"/t/acme/budgets/{budget.pk}/delete/", {}, 302),
        "test": ("budgets.edit", "post", f"/t/acme/budgets/{budget.pk}/test-webhook/", {}, 302),
        "redeem": ("credits.redeem", "post", "/t/acme/credits/", {"code": "wrong"}, 400),
        "detail": ("usage.view", "get", f"/t/acme/usage/{call.pk}/", {}, 200),
        "latency": ("overview.view", "get", "/t/acme/latency.json?range=24h", {}, 200),
    }[action]
    response = getattr(console_client(role), method)(path, data)
    if role == "anonymous":
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    elif role == "outsider":
        assert response.status_code == 404
    elif role in ALLOWED[permission]:
        assert response.status_code == ok
    else:
        assert response.status_code == 403
    deleted = action == "delete" and role in ALLOWED[permission]
    assert Budget.objects.filter(pk=budget.pk).exists() is not deleted


def test_one_call_shows_its_body_log_when_the_tenant_logs_bodies(console_client, roles):
    from gateway.models import BodyLog

    save(record(roles.tenant, timezone.now(), request_id="req-body-1", attempts=2, error_type=""))
    call = UsageRecord.objects.get()
    BodyLog.objects.create(
        request_id="req-body-1", tenant=roles.tenant, endpoint="chat.completions", status=200,
        request_body='{"messages": "hello there"}', response_body='{"answer": "general kenobi"}', created_at=call.created_at,
    )  # fmt: skip
    client = console_client("viewer")
    off = client.get(f"/t/acme/usage/{call.pk}/").content.decode()
    assert "Body logging is off" in off and "general kenobi" not in off
    roles.tenant.body_logging = True
    roles.tenant.save(update_fields=["body_logging"])
    on = client.get(f"/t/acme/usage/{call.pk}/").content.decode()
    assert "general kenobi" in on and "hello there" in on and "req-body-1" in on
