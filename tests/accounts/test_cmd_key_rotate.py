"""`manage.py key_rotate`: the new key on the last line, the old one kept for the grace period."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts import keys
from accounts.models import ApiKey, AuditEntry
from accounts.services import api_key_issue

pytestmark = pytest.mark.django_db


def call(*args):
    out = StringIO()
    call_command("key_rotate", *args, stdout=out)
    return out.getvalue()


def test_it_prints_the_new_key_last_and_keeps_the_old_for_the_grace(roles):
    issued = api_key_issue(tenant=roles.tenant, name="cron")
    out = call("--tenant", "acme", "--key", f"th-{issued.api_key.prefix}…", "--grace", "90m")
    raw = out.strip().splitlines()[-1]
    key = ApiKey.objects.get(pk=issued.api_key.pk)
    assert keys.parse(raw).prefix == key.prefix and key.previous_prefix == issued.api_key.prefix
    assert (key.previous_valid_until - key.rotated_at).total_seconds() == 90 * 60
    assert issued.raw not in out
    assert AuditEntry.objects.get(action="key.rotate").actor == "command:key_rotate"


@pytest.mark.parametrize("grace", ["forever", "-1h", "31d", "1\x00h"])
def test_it_refuses_a_bad_grace_and_changes_nothing(roles, grace):
    issued = api_key_issue(tenant=roles.tenant, name="cron")
    with pytest.raises(CommandError):
        call("--tenant", "acme", "--key", issued.api_key.prefix, "--grace", grace)
    assert ApiKey.objects.get(pk=issued.api_key.pk).prefix == issued.api_key.prefix


def test_it_will_not_rotate_another_tenants_key(roles):
    theirs = api_key_issue(tenant=roles.other, name="theirs").api_key
    with pytest.raises(CommandError, match="another tenant"):
        call("--tenant", "acme", "--key", theirs.prefix)
    assert ApiKey.objects.get(pk=theirs.pk).previous_prefix is None
