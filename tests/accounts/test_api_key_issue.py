import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts import keys
from accounts.models import ApiKey
from accounts.services import api_key_issue, api_key_revoke, tenant_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return tenant_create(name="Acme", slug="acme")


def test_it_issues_a_key_and_stores_only_its_prefix_and_digest(tenant):
    issued = api_key_issue(tenant=tenant, name="ci")
    assert issued.raw.startswith("th-") and len(issued.raw) == 3 + keys.PREFIX_LENGTH + keys.SECRET_LENGTH
    parsed = keys.parse(issued.raw)
    stored = ApiKey.objects.get()
    assert stored.prefix == parsed.prefix
    assert stored.digest == keys.digest(parsed.secret) and len(stored.digest) == 64
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        row = " ".join(str(value) for value in cursor.fetchone())
    assert parsed.secret not in row and issued.raw not in row


def test_it_matches_only_the_right_secret(tenant):
    parsed = keys.parse(api_key_issue(tenant=tenant, name="ci").raw)
    stored = ApiKey.objects.get()
    assert keys.matches(parsed.secret, stored.digest)
    assert not keys.matches(parsed.secret[:-1] + ("A" if parsed.secret[-1] != "A" else "B"), stored.digest)


def test_it_depends_on_the_server_pepper(tenant, settings):
    parsed = keys.parse(api_key_issue(tenant=tenant, name="ci").raw)
    settings.API_KEY_PEPPER = "another-pepper"
    assert not keys.matches(parsed.secret, ApiKey.objects.get().digest)


@pytest.mark.parametrize("raw", ["", "sk-abc", "th-", "th-" + "a" * 51, "th-" + "!" * 52, "th-" + "é" * 52])
def test_it_refuses_to_parse_what_is_not_a_key(raw):
    assert keys.parse(raw) is None


def test_it_normalizes_ip_allow_lists_and_rejects_garbage(tenant):
    issued = api_key_issue(tenant=tenant, name="ci", allowed_ips=[" 10.0.0.0/8", "::1", "10.0.0.0/8"])
    assert issued.api_key.allowed_ips == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValidationError):
        api_key_issue(tenant=tenant, name="bad", allowed_ips=["not-an-ip"])
    assert ApiKey.objects.count() == 1


def test_it_refuses_a_range_with_host_bits_naming_the_network_it_meant(tenant):
    with pytest.raises(ValidationError) as caught:
        api_key_issue(tenant=tenant, name="bad", allowed_ips=["10.0.0.1/8", "fd00::1/64"])
    assert caught.value.message_dict["allowed_ips"] == [
        "10.0.0.1/8 has host bits set (the range is 10.0.0.0/8); fd00::1/64 has host bits set "
        "(the range is fd00::/64): give the range as its network address."
    ]
    assert not ApiKey.objects.exists()


def test_it_revokes(tenant):
    issued = api_key_issue(tenant=tenant, name="ci")
    api_key_revoke(api_key=issued.api_key)
    stored = ApiKey.objects.get()
    assert stored.status == ApiKey.Status.REVOKED and stored.revoked_at is not None
