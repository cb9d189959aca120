"""The operator's tenants pages (/ops/tenants/): who reaches them (operators only, 404 for everyone
else), the list (search, filters, this month's spend from the rollup, keyset pages), creating a
tenant with its first owner, editing its plan and overrides, suspend / resume (the 403 reaches a
second gateway process through the Redis broadcast), and topping up its credits."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import httpx
import orjson
import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import AuditEntry, Invitation, Membership, Plan, Tenant
from accounts.services import tenant_create
from billing.credits import credit_balance
from billing.models import CreditEntry, UsageHourlyTenant
from tests.support import operators as ops_fixtures
from tests.support.operators import NOT_OPERATORS, OPERATORS
from tests.support.snapshot import db_snapshot

pytestmark = pytest.mark.django_db

operators, ops_client, fast_passwords = (
    ops_fixtures.operators,
    ops_fixtures.ops_client,
    ops_fixtures.fast_passwords,
)


@pytest.fixture(autouse=True)
def _fast(fast_passwords):
    """Many users per test: a cheap hasher (tests/support/operators.py)."""


# Every page and action: (method, path, form data).
ACTIONS = [
    ("get", "/ops/tenants/", {}),
    ("get", "/ops/tenants/new/", {}),
    (
        "post",
        "/ops/tenants/new/",
        {"name": "Initech", "slug": "initech", "timezone": "UTC", "owner_email": "x@i.test"},
    ),
    ("get", "/ops/tenants/acme/", {}),
    ("post", "/ops/tenants/acme/", {"name": "Renamed", "timezone": "UTC"}),
    ("post", "/ops/tenants/acme/status/", {"status": "suspended"}),
    ("post", "/ops/tenants/acme/topup/", {"amount": "5", "start_prepaid": "on"}),
]


@pytest.mark.parametrize("way", NOT_OPERATORS)
@pytest.mark.parametrize(("method", "path", "data"), ACTIONS, ids=[f"{m} {p}" for m, p, _ in ACTIONS])
def test_it_is_a_404_for_everyone_but_operators(ops_client, way, method, path, data):
    before = db_snapshot()
    response = getattr(ops_client(way), method)(path, data)
    assert response.status_code == 404
    assert db_snapshot() == before


@pytest.mark.parametrize("way", OPERATORS)
@pytest.mark.parametrize(("method", "path", "data"), ACTIONS, ids=[f"{m} {p}" for m, p, _ in ACTIONS])
def test_operators_reach_every_page_and_action(ops_client, way, method, path, data):
    response = getattr(ops_client(way), method)(path, data)
    assert response.status_code == (200 if method == "get" else 302), response.content[:2000]


# --- the list ---------------------------------------------------------------------------------------


def test_the_list_shows_each_tenant_with_this_months_spend_from_the_rollup(ops_client, roles):
    now = timezone.now()
    this_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    UsageHourlyTenant.objects.create(
        tenant_id=roles.tenant.pk, hour=this_month, requests=3, cost=Decimal("1.25")
    )
    UsageHourlyTenant.objects.create(
        tenant_id=roles.tenant.pk, hour=this_month.replace(hour=1), requests=2, cost=Decimal("0.5")
    )
    # Last month's hour: not this period's spend.
    UsageHourlyTenant.objects.create(
        tenant_id=roles.tenant.pk, hour=this_month - timedelta(hours=2), requests=9, cost=Decimal("99")
    )
    response = ops_client("operator").get("/ops/tenants/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme" in html and "Globex" in html
    row = html[html.index("/ops/tenants/acme/") :]
    row = row[: row.index("</tr>")]
    assert "$1.75" in row and ">5<" in row
    assert "$99" not in html


def test_it_searches_by_name_or_slug_and_filters_by_status_and_plan(ops_client, roles):
    other_plan = Plan.objects.create(name="starter")
    tenant_create(name="Initech Labs", slug="initech", plan=other_plan)
    Tenant.objects.filter(slug="globex").update(status="suspended")
    client = ops_client("superuser")

    def slugs(query: str) -> set[str]:
        response = client.get("/ops/tenants/?" + query)
        assert response.status_code == 200
        return {
            t.slug for t in Tenant.objects.all() if f"/ops/tenants/{t.slug}/" in response.content.decode()
        }

    assert slugs("q=labs") == {"initech"}
    assert slugs("q=GLOB") == {"globex"}
    assert slugs("status=suspended") == {"globex"}
    assert slugs(f"plan={other_plan.pk}") == {"initech"}
    assert slugs("q=nothing-like-it") == set()
    assert b"No tenant matches" in client.get("/ops/tenants/?q=nothing-like-it").content


def test_it_pages_by_keyset(ops_client, roles):
    for i in range(55):
        tenant_create(name=f"Tenant {i:02d}", slug=f"t{i:02d}")
    client = ops_client("operator")
    first = client.get("/ops/tenants/").content.decode()
    assert "/ops/tenants/t54/" in first and "/ops/tenants/t05/" in first
    assert "/ops/tenants/t04/" not in first and "/ops/tenants/acme/" not in first
    cursor = str(Tenant.objects.get(slug="t05").pk)
    assert f"cursor={cursor}" in first
    second = client.get(f"/ops/tenants/?cursor={cursor}").content.decode()
    assert "/ops/tenants/t04/" in second and "/ops/tenants/acme/" in second
    assert "/ops/tenants/t05/" not in second and "Older" not in second


@pytest.mark.parametrize("query", ["cursor=abc", "cursor=-1", "status=deleted", "plan=999999", "q=%00"])
def test_bad_filters_are_a_400_with_the_form(ops_client, roles, query):
    response = ops_client("operator").get("/ops/tenants/?" + query)
    assert response.status_code == 400
    assert b'class="error"' in response.content


def test_the_empty_state_teaches(ops_client, roles):
    Membership.objects.all().delete()
    Tenant.objects.all().delete()
    response = ops_client("operator").get("/ops/tenants/")
    assert b"No tenants yet" in response.content and b"Create the first tenant" in response.content


# --- create -----------------------------------------------------------------------------------------


def create(client, **fields):
    data = {
        "name": "Initech",
        "slug": "initech",
        "timezone": "Europe/Paris",
        "owner_email": "peter@initech.test",
    }
    return client.post("/ops/tenants/new/", {**data, **fields})


def test_creating_a_tenant_invites_a_new_owner_by_email(ops_client, roles, operators):
    plan = Plan.objects.get(name="pro")
    response = create(ops_client("operator"), plan=str(plan.pk), prepaid="on")
    assert response.status_code == 302 and response["Location"] == "/ops/tenants/initech/"
    tenant = Tenant.objects.get(slug="initech")
    assert (tenant.name, tenant.plan, tenant.timezone, tenant.prepaid) == (
        "Initech",
        plan,
        "Europe/Paris",
        True,
    )
    invitation = Invitation.objects.get(tenant=tenant)
    assert (invitation.email, invitation.role) == ("peter@initech.test", "owner")
    assert [m.to for m in mail.outbox] == [["peter@initech.test"]]
    actions = set(AuditEntry.objects.filter(tenant=tenant).values_list("action", "actor_user"))
    assert actions == {("tenant.create", operators.operator.pk), ("invitation.create", operators.operator.pk)}


def test_an_existing_account_becomes_owner_at_once(ops_client, roles):
    response = create(ops_client("superuser"), owner_email="VIEWER@acme.test")
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="initech")
    assert Membership.objects.get(tenant=tenant).user == roles.viewer
    assert Membership.objects.get(tenant=tenant).role == "owner"
    assert not Invitation.objects.filter(tenant=tenant).exists() and mail.outbox == []


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"slug": "acme"}, "slug", "already exists"),
        ({"slug": "not a slug"}, "slug", "valid"),
        ({"timezone": "Mars/Olympus"}, "timezone", "not an IANA time zone"),
        ({"owner_email": "nobody"}, "owner_email", "valid email"),
        ({"name": ""}, "name", "required"),
    ],
)
def test_bad_input_is_refused_inline_and_creates_nothing(ops_client, roles, fields, field, message):
    before = db_snapshot()
    response = create(ops_client("operator"), **fields)
    assert response.status_code == 400
    html = response.content.decode()
    assert f'id="id_{field}_error"' in html and message in html
    assert db_snapshot() == before and mail.outbox == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(max_size=260),
    slug=st.text(max_size=120),
    zone=st.one_of(st.sampled_from(["UTC", "Europe/Paris"]), st.text(max_size=70)),
    email=st.one_of(st.emails(), st.text(max_size=300)),
    plan=st.one_of(st.text(max_size=12), st.integers(min_value=-(2**70), max_value=2**70).map(str)),
)
def test_hostile_input_is_a_4xx_or_a_whole_tenant(ops_client, roles, name, slug, zone, email, plan):
    before = db_snapshot()
    client = ops_client("operator")
    data = {"name": name, "slug": slug, "timezone": zone, "owner_email": email, "plan": plan}
    try:
        response = client.post("/ops/tenants/new/", data)
    except ValueError:
        return  # the test client itself refuses a NUL in form data; no browser can send one either
    assert response.status_code in (302, 400), response.content[:500]
    if response.status_code == 400:
        assert db_snapshot() == before
    else:
        tenant = Tenant.objects.get(slug=slug)
        assert (
            Membership.objects.filter(tenant=tenant).exists()
            or Invitation.objects.filter(tenant=tenant).exists()
        )


# --- edit -------------------------------------------------------------------------------------------


def edit(client, **fields):
    data = {"name": "Acme", "timezone": "UTC", **fields}
    return client.post("/ops/tenants/acme/", data)


def test_an_operator_changes_plan_overrides_and_settings(ops_client, roles, operators):
    starter = Plan.objects.create(name="starter", rpm_limit=100)
    response = edit(
        ops_client("operator"),
        plan=str(starter.pk),
        timezone="Asia/Tokyo",
        rpm_limit="40",
        tpm_limit="9000",
        concurrency_limit="3",
        end_user_rpm_limit="5",
        end_user_tpm_limit="",
        end_user_concurrency_limit="1",
        body_logging="on",
        prepaid="on",
    )
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.plan == starter and tenant.timezone == "Asia/Tokyo"
    assert (tenant.rpm_limit, tenant.tpm_limit, tenant.concurrency_limit) == (40, 9000, 3)
    assert (tenant.end_user_rpm_limit, tenant.end_user_tpm_limit, tenant.end_user_concurrency_limit) == (
        5,
        None,
        1,
    )
    assert tenant.body_logging and tenant.prepaid
    entry = AuditEntry.objects.filter(tenant=tenant, action="tenant.change").latest("created_at")
    assert entry.actor_user == operators.operator
    assert entry.before["rpm_limit"] is None and entry.after["rpm_limit"] == 40


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"rpm_limit": "0"}, "rpm_limit"),
        ({"tpm_limit": "-3"}, "tpm_limit"),
        ({"concurrency_limit": "99999999999"}, "concurrency_limit"),
        ({"timezone": "Nowhere"}, "timezone"),
        ({"plan": "424242"}, "plan"),
        ({"name": " "}, "name"),
    ],
)
def test_a_bad_edit_is_refused_inline_and_changes_nothing(ops_client, roles, fields, field):
    before = db_snapshot()
    response = edit(ops_client("operator"), **fields)
    assert response.status_code == 400
    assert f'id="id_{field}_error"' in response.content.decode()
    assert db_snapshot() == before


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    limits=st.lists(
        st.one_of(st.text(max_size=12), st.integers(min_value=-(2**40), max_value=2**40).map(str)),
        min_size=6,
        max_size=6,
    ),
    zone=st.text(max_size=70),
)
def test_hostile_edits_are_a_4xx_or_a_valid_tenant(ops_client, roles, limits, zone):
    names = [
        "rpm_limit",
        "tpm_limit",
        "concurrency_limit",
        "end_user_rpm_limit",
        "end_user_tpm_limit",
        "end_user_concurrency_limit",
    ]
    before = db_snapshot()
    try:
        response = edit(ops_client("operator"), timezone=zone, **dict(zip(names, limits, strict=True)))
    except ValueError:
        return  # a NUL: the test client refuses to encode it
    assert response.status_code in (302, 400)
    if response.status_code == 400:
        assert db_snapshot() == before
    else:
        tenant = Tenant.objects.get(slug="acme")
        tenant.full_clean()
        assert all(getattr(tenant, name) is None or getattr(tenant, name) >= 1 for name in names)


# --- suspend / resume -------------------------------------------------------------------------------


def test_suspend_and_resume_are_audited(ops_client, roles, operators):
    client = ops_client("superuser")
    assert client.post("/ops/tenants/acme/status/", {"status": "suspended"}).status_code == 302
    assert Tenant.objects.get(slug="acme").status == "suspended"
    assert b"suspended" in client.get("/ops/tenants/acme/").content
    assert client.post("/ops/tenants/acme/status/", {"status": "active"}).status_code == 302
    assert Tenant.objects.get(slug="acme").status == "active"
    rows = list(
        AuditEntry.objects.filter(tenant=roles.tenant, action__in=["tenant.suspend", "tenant.resume"])
        .order_by("created_at", "id")
        .values_list("action", "actor_user", "after")
    )
    assert rows == [
        ("tenant.suspend", operators.superuser.pk, {"status": "suspended"}),
        ("tenant.resume", operators.superuser.pk, {"status": "active"}),
    ]


@pytest.mark.parametrize("status", ["", "deleted", "ACTIVE"])
def test_an_unknown_status_is_a_400(ops_client, roles, status):
    before = db_snapshot()
    assert ops_client("operator").post("/ops/tenants/acme/status/", {"status": status}).status_code == 400
    assert db_snapshot() == before


def test_an_unknown_tenant_is_a_404(ops_client, roles):
    for path in ("/ops/tenants/nope/", "/ops/tenants/nope/status/", "/ops/tenants/nope/topup/"):
        method = "get" if path.endswith("nope/") else "post"
        assert getattr(ops_client("operator"), method)(path, {"status": "active"}).status_code == 404


# --- top up -----------------------------------------------------------------------------------------


def test_a_top_up_shows_on_the_tenants_credits_page(ops_client, console_client, roles, operators):
    Tenant.objects.filter(pk=roles.tenant.pk).update(prepaid=True)
    response = ops_client("operator").post(
        "/ops/tenants/acme/topup/", {"amount": "12.5", "note": "invoice 7"}
    )
    assert response.status_code == 302
    assert credit_balance(roles.tenant) == Decimal("12.5")
    entry = CreditEntry.objects.get(tenant=roles.tenant)
    assert (entry.kind, entry.note, entry.created_by) == ("topup", "invoice 7", operators.operator)
    assert AuditEntry.objects.filter(
        tenant=roles.tenant, action="credit.add", actor_user=operators.operator
    ).exists()
    page = console_client("owner").get("/t/acme/credits/").content.decode()
    assert "$12.5" in page and "invoice 7" in page


def test_a_tenant_not_on_prepaid_credits_needs_the_box(ops_client, roles):
    client = ops_client("operator")
    before = db_snapshot()
    response = client.post("/ops/tenants/acme/topup/", {"amount": "5"})
    assert response.status_code == 400 and b"not on prepaid credits" in response.content
    assert db_snapshot() == before
    response = client.post("/ops/tenants/acme/topup/", {"amount": "5", "start_prepaid": "on"})
    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="acme")
    assert tenant.prepaid and credit_balance(tenant) == Decimal(5)


@pytest.mark.parametrize(
    "amount", ["0", "-5", "abc", "NaN", "Infinity", "1e400", "0.0000000001", "2000000000"]
)
def test_a_bad_amount_is_refused_inline(ops_client, roles, amount):
    Tenant.objects.filter(pk=roles.tenant.pk).update(prepaid=True)
    before = db_snapshot()
    response = ops_client("operator").post("/ops/tenants/acme/topup/", {"amount": amount})
    assert response.status_code == 400 and b'id="id_amount_error"' in response.content
    assert db_snapshot() == before


# --- suspension across gateway processes ------------------------------------------------------------


@pytest.mark.skipif(
    not django_settings.REDIS_URL or connection.vendor != "postgresql", reason="needs PostgreSQL + Redis"
)
def test_a_suspension_reaches_a_second_gateway_process_at_once(world):
    """The operator suspends acme in this process; a separate `manage.py serve` process, which cached
    acme's key on the first call, refuses the next call with 403 tenant_suspended (the change reached
    it over the Redis broadcast, not by its cache expiring), and serves it again after resume."""
    from tests.support.process import GatewayProcess, subprocess_env

    env = subprocess_env(
        settings_dict=connection.settings_dict,
        redis_url=django_settings.REDIS_URL,
        TOLLHOUSE_CACHE_TTL="300",  # only the broadcast can make it forget within the test
    )
    operator = Client()
    operator.force_login(world.operator)
    body = orjson.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    headers = {"Authorization": f"Bearer {world.key}", "Content-Type": "application/json"}

    def wait_for(status: int, url: str) -> httpx.Response:
        deadline = time.monotonic() + 5
        while True:
            response = httpx.post(url + "/v1/chat/completions", content=body, headers=headers, timeout=10)
            if response.status_code == status or time.monotonic() > deadline:
                return response
            time.sleep(0.05)

    with GatewayProcess(env=env) as gateway:
        assert wait_for(200, gateway.url).status_code == 200
        started = time.monotonic()
        assert operator.post("/ops/tenants/acme/status/", {"status": "suspended"}).status_code == 302
        refused = wait_for(403, gateway.url)
        assert refused.status_code == 403, refused.text
        assert time.monotonic() - started < 3
        assert refused.json()["error"]["code"] == "tenant_suspended"
        # globex is untouched.
        other = httpx.post(
            gateway.url + "/v1/chat/completions",
            content=body,
            headers={**headers, "Authorization": f"Bearer {world.globex_key}"},
            timeout=10,
        )
        assert other.status_code == 200
        assert operator.post("/ops/tenants/acme/status/", {"status": "active"}).status_code == 302
        assert wait_for(200, gateway.url).status_code == 200
        assert "Traceback" not in gateway.log()


def test_the_detail_page_links_to_the_console_read_only(ops_client, roles):
    html = ops_client("operator").get("/ops/tenants/acme/").content.decode()
    assert 'href="/t/acme/"' in html and "Open console (read-only)" in html
