"""Every committed change to a cached model is broadcast over Redis pub/sub, however it was made:
save(), delete(), QuerySet.update(), bulk_create(), bulk_update(), queryset delete. Published after
the commit, never for a rolled-back change. Checked with a real Redis subscriber."""

import time
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest
import redis
from django.conf import settings
from django.db import transaction

from accounts.models import ApiKey, Plan, SigningKey, Tenant
from accounts.services import api_key_issue, tenant_create
from billing.models import Budget, ModelPrice
from billing.services import model_price_set
from config import changes
from gateway.models import Deployment, ModelRoute, Provider
from gateway.services import deployment_upsert, provider_upsert, route_upsert

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis")

EVERYTHING = {"kind": "all"}


@pytest.fixture(autouse=True)
def _own_channel(settings):
    """A channel of these tests' own: the live gateway of other tests listens on the usual one."""
    settings.TOLLHOUSE_REDIS_PREFIX = "thd-broadcast-test:"


class Channel:
    """A real subscriber to the config-change channel."""

    def __init__(self) -> None:
        self.client = redis.Redis.from_url(settings.REDIS_URL)
        self.pubsub = self.client.pubsub()
        self.pubsub.subscribe(changes.channel())
        deadline = time.monotonic() + 5
        while (self.pubsub.get_message(timeout=0.1) or {}).get("type") != "subscribe":
            assert time.monotonic() < deadline, "could not subscribe"

    def messages(self, wait: float = 0.3) -> list[dict]:
        """Everything published until the channel has been quiet for `wait` seconds."""
        received = []
        while (message := self.pubsub.get_message(timeout=wait)) is not None:
            received.append(orjson.loads(message["data"]))
        return received

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


@pytest.fixture
def channel(transactional_db):
    subscriber = Channel()
    yield subscriber
    subscriber.close()


@pytest.fixture
def config(transactional_db):
    """One of each cached model."""
    plan = Plan.objects.create(name="Team")
    tenant = tenant_create(name="Acme", slug="acme", plan=plan)
    key = api_key_issue(tenant=tenant, name="ci").api_key
    provider = provider_upsert(name="mock", kind="mock", base_url="http://127.0.0.1:9/v1")
    route = route_upsert(name="gpt-4.1")
    deployment = deployment_upsert(route=route, provider=provider, upstream_model="gpt-4.1")
    price = model_price_set(
        model="gpt-4.1",
        input_per_mtok=Decimal(1),
        cached_input_per_mtok=Decimal(1),
        output_per_mtok=Decimal(1),
        effective_from=datetime(2025, 1, 1, tzinfo=UTC),
    )
    return {
        "plan": plan,
        "tenant": tenant,
        "key": key,
        "provider": provider,
        "route": route,
        "deployment": deployment,
        "price": price,
    }


def test_every_cached_model_broadcasts():
    assert set(changes.broadcast_models()) == {
        ApiKey,
        Tenant,
        Plan,
        Provider,
        ModelRoute,
        Deployment,
        ModelPrice,
        Budget,
        SigningKey,
    }


UPDATES = [
    (ApiKey, {"rpm_limit": 5}),
    (Tenant, {"status": "suspended"}),
    (Plan, {"rpm_limit": 1}),
    (Provider, {"enabled": False}),
    (ModelRoute, {"enabled": False}),
    (Deployment, {"enabled": False}),  # what demo_prepare does when a real provider takes over
    (ModelPrice, {"output_per_mtok": Decimal(2)}),
]


@pytest.mark.parametrize(("model", "values"), UPDATES, ids=[model.__name__ for model, _ in UPDATES])
def test_queryset_update_is_published_after_commit(config, channel, model, values):
    channel.messages()  # what setting up published
    with transaction.atomic():
        assert model.objects.filter(pk__isnull=False).update(**values) == 1
        assert channel.messages() == []  # not before the commit: workers would reload the old row
    expected = {"kind": "key", "prefix": config["key"].prefix} if model is ApiKey else EVERYTHING
    assert channel.messages() == [expected]


@pytest.mark.parametrize(("model", "values"), UPDATES, ids=[model.__name__ for model, _ in UPDATES])
def test_a_rolled_back_update_is_not_published(config, channel, model, values):
    channel.messages()
    with pytest.raises(RuntimeError), transaction.atomic():
        model.objects.filter(pk__isnull=False).update(**values)
        raise RuntimeError("roll back")
    assert channel.messages() == []


def test_an_update_outside_a_transaction_is_published_at_once(config, channel):
    channel.messages()
    Deployment.objects.filter(route=config["route"]).update(weight=3)
    assert channel.messages() == [EVERYTHING]


def test_a_key_update_names_every_key_it_changed(config, channel):
    second = api_key_issue(tenant=config["tenant"], name="second").api_key
    channel.messages()
    assert config["tenant"].api_keys.update(status=ApiKey.Status.REVOKED) == 2  # a related manager too
    received = channel.messages()
    assert sorted(m["prefix"] for m in received) == sorted([config["key"].prefix, second.prefix])
    assert {m["kind"] for m in received} == {"key"}


def test_an_update_that_changes_nothing_publishes_nothing(config, channel):
    channel.messages()
    assert ApiKey.objects.filter(name="no such key").update(rpm_limit=1) == 0
    assert channel.messages() == []


def test_bulk_create_and_bulk_update_are_published(config, channel):
    channel.messages()
    routes = ModelRoute.objects.bulk_create([ModelRoute(name="a"), ModelRoute(name="b")])
    assert channel.messages() == [EVERYTHING]

    key = config["key"]
    key.rpm_limit = 7
    ApiKey.objects.bulk_update([key], ["rpm_limit"])
    assert channel.messages() == [{"kind": "key", "prefix": key.prefix}]

    for route in routes:
        route.enabled = False
    with transaction.atomic():
        ModelRoute.objects.bulk_update(routes, ["enabled"])
        assert channel.messages() == []
    assert channel.messages() == [EVERYTHING]


def test_save_and_deletes_are_published(config, channel):
    channel.messages()
    config["plan"].rpm_limit = 3
    config["plan"].save()
    assert channel.messages() == [EVERYTHING]

    ModelPrice.objects.filter(model="gpt-4.1").delete()
    assert channel.messages() == [EVERYTHING]

    prefix = config["key"].prefix
    Tenant.objects.filter(pk=config["tenant"].pk).delete()  # cascades to its keys
    received = channel.messages()
    assert {"kind": "key", "prefix": prefix} in received and EVERYTHING in received
