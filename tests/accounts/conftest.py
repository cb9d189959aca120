"""Fixtures of the accounts tests: the loopback OpenID provider and single sign-on configured for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.oidc_provider import OidcProvider


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OidcProvider]:
    """One provider (one RSA key generated at start) for the session; each test resets its behaviour."""
    with OidcProvider() as provider:
        yield provider


@pytest.fixture
def oidc(oidc_provider: OidcProvider, settings: Any) -> Iterator[OidcProvider]:
    """Single sign-on on, against the loopback provider, with the operator claim (`groups` holding
    `tollhouse-operators`) and the tenants claim (`tenants`) configured."""
    from accounts.sso import provider_cache
    from tests.support.sso import oidc_settings

    oidc_provider.reset()
    provider_cache().clear()
    settings.TOLLHOUSE_OIDC = oidc_settings(
        oidc_provider,
        OPERATOR_CLAIM="groups",
        OPERATOR_VALUES="tollhouse-operators",
        TENANTS_CLAIM="tenants",
        NAME="Acme ID",
    )
    yield oidc_provider
    provider_cache().clear()
