"""The claims of single sign-on as storage sees them: `accounts.sso_sync.tenant_grants` (the tenants
claim's format) and `sso_sign_in` with whatever a provider may send — a membership only ever in a
tenant that exists, with a role that exists; never an exception other than a refusal."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Membership, SsoIdentity
from accounts.services import tenant_create
from accounts.sso import SsoError
from accounts.sso_sync import claim_values, sso_sign_in, tenant_grants
from config.env import EnvReader
from config.sso import read_oidc

ROLES = {"owner", "admin", "member", "viewer"}


@pytest.mark.parametrize(
    ("claim", "grants"),
    [
        (["acme:admin", "globex:viewer"], {"acme": "admin", "globex": "viewer"}),
        ({"acme": "Owner", "globex": "member"}, {"acme": "owner", "globex": "member"}),
        ("acme:admin globex:viewer", {"acme": "admin", "globex": "viewer"}),
        ("acme:admin,globex:viewer", {"acme": "admin", "globex": "viewer"}),
        (["acme:viewer", "acme:admin", "acme:member"], {"acme": "admin"}),  # the strongest wins
        (["acme", "acme:root", "tollhouse-operators", 7, None, "a:b:c"], {}),
        (None, {}),
        (42, {}),
        ({"acme": 3, "": "admin"}, {}),
    ],
)
def test_it_reads_the_tenants_claim(claim, grants):
    assert tenant_grants(claim)[0] == grants


def test_it_says_what_it_skipped():
    _, skipped = tenant_grants(["acme", "globex:root"])
    assert skipped == ["'acme' is not slug:role", "'globex': unknown role 'root'"]
    assert tenant_grants(42)[1] == ["the claim is a int, not a list, a string or an object"]


def test_claim_values_reads_a_string_or_a_list_of_strings():
    assert claim_values({"groups": "ops"}, "groups") == {"ops"}
    assert claim_values({"groups": ["ops", 1, None, "dev"]}, "groups") == {"ops", "dev"}
    assert claim_values({"groups": {"ops": True}}, "groups") == set()
    assert claim_values({}, "groups") == set()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
tenant_entries = st.sampled_from(["acme", "globex", "nope", "", "ACME"]).flatmap(
    lambda slug: st.sampled_from(["owner", "admin", "member", "viewer", "Root", "", "OWNER"]).map(
        lambda role: f"{slug}:{role}"
    )
)


@given(claim=json_values | st.lists(tenant_entries | st.text(max_size=20), max_size=8))
def test_any_claim_gives_only_real_roles(claim):
    grants, skipped = tenant_grants(claim)
    assert set(grants.values()) <= ROLES
    assert all(isinstance(slug, str) and slug.strip() == slug and slug for slug in grants)
    assert all(isinstance(line, str) for line in skipped)


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tenants_claim=json_values
    | st.lists(tenant_entries, max_size=6)
    | st.dictionaries(
        st.sampled_from(["acme", "globex", "nope"]), st.sampled_from(["owner", "viewer", "x", ""]), max_size=3
    ),
    groups=json_values,
    email=st.one_of(st.just("person@acme.test"), st.text(max_size=40), st.none(), st.integers()),
)
def test_any_claims_sign_in_consistently_or_are_refused(tenants_claim, groups, email):
    env = EnvReader(
        {
            "TOLLHOUSE_OIDC_ISSUER": "https://id.example",
            "TOLLHOUSE_OIDC_CLIENT_ID": "tollhouse",
            "TOLLHOUSE_OIDC_CLIENT_SECRET": "client-secret-0123456789",
            "TOLLHOUSE_OIDC_OPERATOR_CLAIM": "groups",
            "TOLLHOUSE_OIDC_OPERATOR_VALUES": "ops",
            "TOLLHOUSE_OIDC_TENANTS_CLAIM": "tenants",
        }
    )
    config = read_oidc(env)
    assert config is not None
    for slug in ("acme", "globex"):
        if not Membership._meta.apps.get_model("accounts", "Tenant").objects.filter(slug=slug).exists():
            tenant_create(name=slug.capitalize(), slug=slug)
    claims = {
        "iss": "https://id.example",
        "sub": "person-1",
        "email": email,
        "tenants": tenants_claim,
        "groups": groups,
    }
    try:
        user = sso_sign_in(config=config, claims=claims)
    except SsoError as refusal:
        assert refusal.message and refusal.status == 403
        assert not SsoIdentity.objects.exists()
        return
    wanted, _ = tenant_grants(tenants_claim)
    stored = {m.tenant.slug: m.role for m in Membership.objects.filter(user=user)}
    assert stored == {slug: role for slug, role in wanted.items() if slug in ("acme", "globex")}
    assert user.is_staff == ("ops" in claim_values(claims, "groups"))
    get_user_model().objects.all().delete()
