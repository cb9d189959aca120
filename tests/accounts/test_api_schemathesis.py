"""schemathesis against the management API's own schema (/api/schema/), on the live server with an
owner's token: for every operation, requests that fit the schema and requests that break it, with
real object ids and the token's tenant most of the time (else random ones). No answer may be a 5xx,
and every answer must be what the schema says (status, content type, body).

Every example is derandomized, so CI sends the same requests every time; the test counts what it
sent and fails if that drops below 2,000.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import Membership
from accounts.services import api_key_issue
from accounts.signing import signing_key_add
from billing.budgets import budget_set
from billing.credits import credit_topup
from tests.support.api import token_for
from tests.support.tokens import SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION_AND_MODE = 40  # x 2 modes x every operation: over 2,000 requests
QUOTA = 2000
# The operator's endpoints (accounts/api/tenants.py, gateway/api/catalog.py, billing/api/prices.py).
OPERATOR_TAGS = {"tenants (operator)", "providers", "routes", "deployments", "prices"}


def examples(count: int) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def seed(world: Any) -> dict[str, list[int]]:
    """Objects of acme for the generated requests to find (by id), and of globex to be refused."""
    world.acme.prepaid = True
    world.acme.save()
    credit_topup(tenant=world.acme, usd=Decimal(5))
    keys = [api_key_issue(tenant=world.acme, name=f"fuzz-{n}").api_key for n in range(3)]
    theirs = api_key_issue(tenant=world.globex, name="globex-app").api_key
    budgets = [budget_set(tenant=world.acme, usd=Decimal(10), period=p) for p in ("day", "week")]
    signing = signing_key_add(
        tenant=world.acme, name="s", issuer="https://auth.acme.test", algorithm="HS256", secret=SECRET
    )
    # Never the token owner's own membership: removing it would end the run's access to acme.
    members = list(
        Membership.objects.filter(tenant=world.acme).exclude(user=world.owner).values_list("pk", flat=True)
    )
    return {
        "key_id": [key.pk for key in keys] + [theirs.pk],
        "budget_id": [budget.pk for budget in budgets],
        "signing_key_id": [signing.pk],
        "member_id": members,
        "invitation_id": [1],
        "record_id": [1],
    }


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_schema(gateway_server, world, settings_override):
    ids = seed(world)
    token = token_for(world.owner, days=1)
    auth = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{gateway_server}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    sent: dict[str, int] = {}
    statuses: dict[int, int] = {}
    session = requests.Session()
    unbreakable: list[str] = []
    spent = [0.0]
    began = time.monotonic()

    operator_statuses: dict[int, int] = {}
    for operation in operations:
        operator = bool(OPERATOR_TAGS & set(operation.definition.raw.get("tags") or ()))
        for mode in GenerationMode:
            strategy = operation.as_strategy(generation_mode=mode, headers=auth)

            @examples(EXAMPLES_PER_OPERATION_AND_MODE)
            @given(case=strategy, real=st.integers(0, 3), pick=st.integers(0, 9))
            def fuzz(case: Any, real: int, pick: int) -> None:
                # Mostly the token's tenant and real ids (else nearly every answer would be a 404).
                for name in list(case.path_parameters or {}):
                    if real and name == "slug":
                        case.path_parameters[name] = "acme"
                    elif real and ids.get(name):
                        case.path_parameters[name] = ids[name][pick % len(ids[name])]
                started = time.monotonic()
                response = case.call(base_url=gateway_server, headers=auth, session=session, timeout=30)
                spent[0] += time.monotonic() - started
                label = f"{case.method.upper()} {case.operation.path}"
                sent[label] = sent.get(label, 0) + 1
                # The operator's endpoints answer an owner's token 404 (counted apart: the share of
                # real work below is the tenant endpoints').
                counted = operator_statuses if operator else statuses  # noqa: B023 (fuzz runs in this iteration)
                counted[response.status_code] = counted.get(response.status_code, 0) + 1
                case.validate_response(response, checks=CHECKS, headers=auth)

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing in this operation's schema can be broken (no body, no parameters but the
                # fixed token): there are no negative examples to send.
                assert mode.is_negative, operation.path
                unbreakable.append(f"{operation.method.upper()} {operation.path}")

    total = sum(sent.values())
    print(
        f"{total} requests in {time.monotonic() - began:.0f} s, {spent[0]:.0f} s of them waiting for answers"
    )
    assert total >= QUOTA, (total, sent)
    assert len(unbreakable) < len(operations) // 2, unbreakable
    tenant_total = sum(statuses.values())
    assert statuses.get(200, 0) + statuses.get(201, 0) > tenant_total // 10, statuses  # real work was done
    # An owner is no operator: every operator endpoint is 404 (or 400/401/405/415/429 before it
    # looks), never a 2xx.
    assert operator_statuses and not any(200 <= status < 300 for status in operator_statuses), (
        operator_statuses
    )
    assert set(statuses) <= {200, 201, 204, 400, 401, 403, 404, 405, 409, 415, 429}, statuses


@pytest.fixture
def settings_override(settings: Any) -> Any:
    # Thousands of calls with one token in a couple of minutes: above TOLLHOUSE_API_RATE's default.
    settings.TOLLHOUSE_API_RATE = "100000/m"
    return settings
