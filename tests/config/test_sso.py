"""TOLLHOUSE_OIDC_* (config/sso.py): off with nothing set; every mistake one clear sentence that the
tollhouse.E001 system check reports at start."""

from __future__ import annotations

import pytest

from config.env import EnvReader
from config.sso import read_oidc
from tests.config.test_checks import check

GOOD = {
    "TOLLHOUSE_OIDC_ISSUER": "https://id.example.com/realms/acme",
    "TOLLHOUSE_OIDC_CLIENT_ID": "tollhouse",
    "TOLLHOUSE_OIDC_CLIENT_SECRET": "client-secret-0123456789",
}


def read(**env):
    reader = EnvReader({**GOOD, **env})
    return read_oidc(reader), reader.errors


def test_it_is_off_with_nothing_set():
    reader = EnvReader({})
    assert read_oidc(reader) is None and reader.errors == []


def test_it_reads_a_whole_configuration():
    config, errors = read(
        TOLLHOUSE_OIDC_SCOPES="openid,email groups",
        TOLLHOUSE_OIDC_NAME="Acme ID",
        TOLLHOUSE_OIDC_OPERATOR_CLAIM="groups",
        TOLLHOUSE_OIDC_OPERATOR_VALUES="ops, platform",
        TOLLHOUSE_OIDC_TENANTS_CLAIM="tollhouse_tenants",
        TOLLHOUSE_OIDC_EMAIL_CLAIM="mail",
    )
    assert errors == []
    assert config.issuer == "https://id.example.com/realms/acme"
    assert config.discovery_url == "https://id.example.com/realms/acme/.well-known/openid-configuration"
    assert config.scopes == "openid email groups"
    assert config.operator_values == {"ops", "platform"}
    assert (config.name, config.tenants_claim, config.email_claim) == ("Acme ID", "tollhouse_tenants", "mail")
    assert config.needs_discovery


def test_explicit_endpoints_skip_discovery():
    config, errors = read(
        TOLLHOUSE_OIDC_AUTHORIZATION_ENDPOINT="https://id.example.com/auth",
        TOLLHOUSE_OIDC_TOKEN_ENDPOINT="https://id.example.com/token",
        TOLLHOUSE_OIDC_JWKS_URI="https://id.example.com/jwks",
    )
    assert errors == [] and not config.needs_discovery


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"TOLLHOUSE_OIDC_CLIENT_SECRET": ""}, "TOLLHOUSE_OIDC_CLIENT_SECRET must be set for single sign-on"),
        ({"TOLLHOUSE_OIDC_ISSUER": ""}, "TOLLHOUSE_OIDC_ISSUER must be set for single sign-on"),
        ({"TOLLHOUSE_OIDC_ISSUER": "http://id.example.com"}, "TOLLHOUSE_OIDC_ISSUER must be an https:// URL"),
        (
            {"TOLLHOUSE_OIDC_TOKEN_ENDPOINT": "ftp://x"},
            "TOLLHOUSE_OIDC_TOKEN_ENDPOINT must be an https:// URL",
        ),
        ({"TOLLHOUSE_OIDC_SCOPES": "email profile"}, "TOLLHOUSE_OIDC_SCOPES must include openid"),
        (
            {"TOLLHOUSE_OIDC_OPERATOR_CLAIM": "groups"},
            "TOLLHOUSE_OIDC_OPERATOR_CLAIM and TOLLHOUSE_OIDC_OPERATOR_VALUES go together",
        ),
        (
            {"TOLLHOUSE_OIDC_TIMEOUT_SECONDS": "0"},
            "TOLLHOUSE_OIDC_TIMEOUT_SECONDS must be a number of seconds",
        ),
    ],
)
def test_each_mistake_is_one_sentence_and_sso_stays_off(env, sentence):
    config, errors = read(**env)
    assert config is None
    assert len(errors) == 1 and errors[0].startswith(sentence), errors


def test_plain_http_is_allowed_on_loopback_only():
    config, errors = read(TOLLHOUSE_OIDC_ISSUER="http://127.0.0.1:5556")
    assert errors == [] and config.issuer == "http://127.0.0.1:5556"


def test_a_stray_variable_without_the_rest_is_reported():
    reader = EnvReader({"TOLLHOUSE_OIDC_TENANTS_CLAIM": "groups"})
    assert read_oidc(reader) is None
    assert reader.errors == [
        "TOLLHOUSE_OIDC_TENANTS_CLAIM set, but single sign-on is off: set TOLLHOUSE_OIDC_ISSUER and "
        "TOLLHOUSE_OIDC_CLIENT_ID (and TOLLHOUSE_OIDC_CLIENT_SECRET) to turn it on, or unset them."
    ]


def test_manage_py_check_reports_it_at_start(tmp_path):
    result = check(
        tmp_path, TOLLHOUSE_OIDC_ISSUER="https://id.example.com", TOLLHOUSE_OIDC_CLIENT_ID="tollhouse"
    )
    assert result.returncode != 0
    assert "tollhouse.E001" in result.stderr
    assert "TOLLHOUSE_OIDC_CLIENT_SECRET must be set for single sign-on" in result.stderr


def test_manage_py_check_is_clean_with_sso_configured(tmp_path):
    result = check(tmp_path, **GOOD)
    assert result.returncode == 0, result.stderr
