"""schemathesis against the management API's own schema (/api/schema/), on the live server: for
every operation, requests that fit the schema and requests that break it, with real object ids (and
the token's tenant) most of the time, else random ones. No answer may be a 5xx, and every answer must
be what the schema says (status, content type, body).

Two runs: an owner's token over every operation (the operator's endpoints must answer it 404), and an
operator's token (a superuser's) over the operator's endpoints: tenants, providers, routes,
deployments, prices, which then really create, change and delete.

Every example is derandomized, so CI sends the same requests every time; each run counts what it
sent and fails if that drops below its quota (2,000 for the owner's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
import schemathesis
from django.utils import timezone
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
from billing.models import ModelPrice
from billing.services import model_price_schedule
from gateway.models import Deployment, ModelRoute, Provider
from tests.support.api import token_for
from tests.support.tokens import SECRET

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION_AND_MODE = 40  # x 2 modes x every operation: over 2,000 requests
QUOTA = 2000
OPERATOR_TAGS = {"tenants (operator)", "providers", "routes", "deployments", "prices"}
OPERATOR_EXAMPLES_PER_OPERATION_AND_MODE = 25  # x 2 modes x 24 operations: about 1,100 requests
OPERATOR_QUOTA = 800


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
        "slug": ["acme"],
        "key_id": [key.pk for key in keys] + [theirs.pk],
        "budget_id": [budget.pk for budget in budgets],
        "signing_key_id": [signing.pk],
        "member_id": members,
        "invitation_id": [1],
        "record_id": [1],
    }


@dataclass
class Run:
    sent: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    unbreakable: list[str] = field(default_factory=list)
    waiting: float = 0.0
    by_operation: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def fuzz_operations(
    server: str,
    operations: list[Any],
    token: str,
    ids: dict[str, list[Any]],
    *,
    per_mode: int,
    body_ids: dict[str, list[int]] | None = None,
) -> Run:
    """Every operation, in both generation modes, `per_mode` examples each. Path parameters named
    in `ids` (and body fields named in `body_ids`) get a real value three times in four."""
    auth = {"Authorization": f"Bearer {token}"}
    session = requests.Session()
    run = Run()
    for operation in operations:
        for mode in GenerationMode:
            strategy = operation.as_strategy(generation_mode=mode, headers=auth)

            @examples(per_mode)
            @given(case=strategy, real=st.integers(0, 3), pick=st.integers(0, 9))
            def fuzz(case: Any, real: int, pick: int) -> None:
                # Mostly the token's tenant and real ids (else nearly every answer would be a 404).
                for name in list(case.path_parameters or {}):
                    if real and ids.get(name):
                        case.path_parameters[name] = ids[name][pick % len(ids[name])]
                if real and body_ids and isinstance(case.body, dict):
                    for name, values in body_ids.items():
                        if isinstance(case.body.get(name), int):
                            case.body[name] = values[pick % len(values)]
                started = time.monotonic()
                response = case.call(base_url=server, headers=auth, session=session, timeout=30)
                run.waiting += time.monotonic() - started
                label = f"{case.method.upper()} {case.operation.path}"
                run.sent[label] = run.sent.get(label, 0) + 1
                run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
                per = run.by_operation.setdefault(label, {})
                per[response.status_code] = per.get(response.status_code, 0) + 1
                case.validate_response(response, checks=CHECKS, headers=auth)

            try:
                fuzz()
            except Unsatisfiable:
                # Nothing in this operation's schema can be broken (no body, no parameters but the
                # fixed token): there are no negative examples to send.
                assert mode.is_negative, operation.path
                run.unbreakable.append(f"{operation.method.upper()} {operation.path}")
    return run


def operations_of(server: str) -> tuple[list[Any], list[Any]]:
    """The schema's operations: (a tenant's, the operator's), told apart by their tags."""
    schema = schemathesis.openapi.from_url(f"{server}/api/schema/")
    operations = [result.ok() for result in schema.get_all_operations()]
    operator = [op for op in operations if set(op.definition.raw.get("tags", [])) & OPERATOR_TAGS]
    return [op for op in operations if op not in operator], operator


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_schema(gateway_server, world, settings_override):
    ids = seed(world)
    token = token_for(world.owner, days=1)
    began = time.monotonic()
    tenant_ops, operator_ops = operations_of(gateway_server)
    assert len(tenant_ops) >= 25
    run = fuzz_operations(gateway_server, tenant_ops, token, ids, per_mode=EXAMPLES_PER_OPERATION_AND_MODE)
    # The operator's endpoints answer an owner's token 404, whatever it sends: a few cases each.
    refused = fuzz_operations(gateway_server, operator_ops, token, ids, per_mode=3)
    print(
        f"owner: {run.total} + {refused.total} requests in {time.monotonic() - began:.0f} s, "
        f"{run.waiting + refused.waiting:.0f} s of them waiting for answers; {run.statuses}"
    )
    assert run.total >= QUOTA, (run.total, run.sent)
    assert len(run.unbreakable) < len(tenant_ops) // 2, run.unbreakable
    statuses = run.statuses
    assert statuses.get(200, 0) + statuses.get(201, 0) > run.total // 10, statuses  # real work was done
    assert set(statuses) <= {200, 201, 204, 400, 401, 403, 404, 405, 409, 415, 429}, statuses
    assert set(refused.statuses) == {404} and len(refused.sent) == len(operator_ops), refused.statuses


def seed_catalog(world: Any) -> dict[str, list[Any]]:
    """The catalog the operator's requests find by id: the world's demo routes on the mock provider,
    their deployments, and prices both in force and scheduled (only those may change)."""
    later = timezone.now() + timedelta(days=30)
    scheduled = [
        model_price_schedule(model=model, input_per_mtok=Decimal(1), cached_input_per_mtok=Decimal("0.1"),
                             output_per_mtok=Decimal(4), effective_from=later + timedelta(hours=n))
        for n, model in enumerate(["gpt-4.1", "claude-sonnet-4-5", "fuzz-model"])
    ]  # fmt: skip
    in_force = list(
        ModelPrice.objects.filter(effective_from__lte=timezone.now()).values_list("pk", flat=True)
    )
    return {
        "slug": ["acme", "globex"],
        "provider_id": [world.provider.pk],
        "route_id": list(ModelRoute.objects.values_list("pk", flat=True)[:5]),
        "deployment_id": list(Deployment.objects.values_list("pk", flat=True)[:5]),
        "price_id": [price.pk for price in scheduled] + in_force[:2],
    }


def test_schemathesis_on_the_operators_endpoints_with_an_operators_token(
    gateway_server, world, settings_override
):
    ids = seed_catalog(world)
    began = time.monotonic()
    _, operator_ops = operations_of(gateway_server)
    assert len(operator_ops) >= 20
    # POST /providers/{id}/test/ sends a request to the provider's base_url: fuzzed first, while
    # every provider in the database is the mock upstream on loopback. Later requests may point a
    # provider's base_url anywhere (PATCH), so the connection test must not run after them: no
    # fuzzed request may make this test call a host it picked.
    connection_test = [op for op in operator_ops if op.path.endswith("/test/")]
    assert len(connection_test) == 1
    assert all(
        base.startswith("http://127.0.0.1:") for base in Provider.objects.values_list("base_url", flat=True)
    )
    run = fuzz_operations(
        gateway_server,
        connection_test + [op for op in operator_ops if op not in connection_test],
        token_for(world.operator, days=1),
        ids,
        per_mode=OPERATOR_EXAMPLES_PER_OPERATION_AND_MODE,
        # A deployment's route and provider are ids in the body: real ones make real deployments.
        body_ids={"route": ids["route_id"], "provider": ids["provider_id"]},
    )
    print(
        f"operator: {run.total} requests in {time.monotonic() - began:.0f} s, "
        f"{run.waiting:.0f} s of them waiting for answers; {run.statuses}"
    )
    assert run.total >= OPERATOR_QUOTA, (run.total, run.sent)
    assert all(run.sent.get(f"{op.method.upper()} {op.path}", 0) >= 10 for op in operator_ops), run.sent
    # Every operation was reached with a real object at least once (not only refused as a 404).
    assert all(set(answers) - {404} for answers in run.by_operation.values()), run.by_operation
    statuses = run.statuses
    assert statuses.get(200, 0) + statuses.get(201, 0) > run.total // 10, statuses
    assert statuses.get(201, 0) > 0 and statuses.get(204, 0) > 0, statuses  # created and deleted
    assert set(statuses) <= {200, 201, 204, 400, 401, 403, 404, 405, 409, 415, 429}, statuses


@pytest.fixture
def settings_override(settings: Any) -> Any:
    # Thousands of calls with one token in a couple of minutes: above TOLLHOUSE_API_RATE's default.
    settings.TOLLHOUSE_API_RATE = "100000/m"
    return settings
