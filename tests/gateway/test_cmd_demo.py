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
