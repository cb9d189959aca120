"""`manage.py usage_seed --tenant SLUG --rows N --days D [--keys K] [--models M]`: realistic
synthetic usage for load tests, written straight into the usage rows and their hourly rollups.

The calls are the tenant's: its existing keys (more are issued, named `seed-N`, when it has fewer
than K; their raw keys are never shown), the first M model routes with their first deployment
(else realistic model names), the prices in force (else list prices). See billing/seed.py for what
the traffic looks like. Bad arguments exit 1 with one sentence and write nothing.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.db import transaction

from accounts.management.commands._cli import command_error, positive_int, tenant_named
from accounts.models import ApiKey, Tenant
from accounts.services import api_key_issue
from billing.seed import SeedModel, default_models, provider_of, usage_seed
from billing.selectors import price_schedule
from config.command import OperatorCommand

MAX_ROWS = 1_000_000_000
MAX_DAYS = 3_650
MAX_KEYS = 1_000
MAX_MODELS = 50


def _bounded(option: str, value: str, maximum: int) -> int:
    if len(value) > 20:  # a megabyte of digits is not a count: refuse it without quoting it
        raise CommandError(f"{option} must be at most {maximum:,}.")
    number = positive_int(option, value)
    assert number is not None
    if number > maximum:
        raise CommandError(f"{option} must be at most {maximum:,}, not {value}.")
    return number


def seed_keys(tenant: Tenant, count: int) -> list[int]:
    """The ids of `count` of the tenant's keys, oldest first, issuing `seed-N` keys if it has fewer."""
    ids = list(
        ApiKey.objects.filter(tenant=tenant, status=ApiKey.Status.ACTIVE)
        .order_by("pk")
        .values_list("pk", flat=True)[:count]
    )
    try:
        with transaction.atomic():
            for number in range(len(ids) + 1, count + 1):
                ids.append(api_key_issue(tenant=tenant, name=f"seed-{number}").api_key.pk)
    except ValidationError as exc:
        raise command_error(exc) from None
    return ids


def seed_models(count: int) -> list[SeedModel]:
    """The first `count` enabled routes (by name), each served by its first enabled deployment,
    topped up with realistic names; each with the operator's price schedule for what serves it."""
    # An operator's entry point may read every app (as key_issue does); billing itself never
    # imports gateway.
    from gateway.models import Deployment

    schedule = price_schedule()
    models: list[SeedModel] = []
    seen: set[str] = set()
    deployments = (
        Deployment.objects.filter(enabled=True, route__enabled=True, provider__enabled=True)
        .select_related("route", "provider")
        .order_by("route__name", "priority", "pk")
    )
    for deployment in deployments:
        if deployment.route.name in seen:
            continue
        seen.add(deployment.route.name)
        models.append(
            SeedModel(
                requested=deployment.route.name,
                served=deployment.upstream_model,
                provider=deployment.provider.name,
                deployment_id=deployment.pk,
                prices=schedule.get(deployment.upstream_model, ()),
            )
        )
        if len(models) == count:
            return models
    for model in default_models(count + len(models)):
        if len(models) == count:
            break
        if model.requested not in seen:
            models.append(
                SeedModel(
                    requested=model.requested,
                    served=model.served,
                    provider=provider_of(model.served),
                    prices=schedule.get(model.served, ()),
                )
            )
    return models


class Command(OperatorCommand):
    help = "Write realistic synthetic usage (raw rows and hourly rollups) for a tenant, for load tests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG", help="The tenant's slug.")
        parser.add_argument("--rows", required=True, metavar="N", help="How many calls to write.")
        parser.add_argument("--days", required=True, metavar="D", help="Spread over the last D days.")
        parser.add_argument("--keys", default="10", metavar="K", help="Over K of the tenant's keys (10).")
        parser.add_argument("--models", default="4", metavar="M", help="Over M models (4).")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = _bounded("--rows", options["rows"], MAX_ROWS)
        days = _bounded("--days", options["days"], MAX_DAYS)
        keys = _bounded("--keys", options["keys"], MAX_KEYS)
        model_count = _bounded("--models", options["models"], MAX_MODELS)
        tenant = tenant_named(options["tenant"])

        key_ids = seed_keys(tenant, keys)
        models = seed_models(model_count)
        verbose = options["verbosity"] >= 2

        def progress(done: int) -> None:
            if verbose:
                self.stdout.write(f"  {done:,} rows")

        result = usage_seed(
            tenant_id=tenant.pk,
            zone=ZoneInfo(tenant.timezone),
            key_ids=key_ids,
            models=models,
            rows=rows,
            days=days,
            progress=progress,
        )
        self.stdout.write(
            f"Seeded {result.rows:,} usage rows for tenant {tenant.slug} (request ids seed-{result.run}-N), "
            f"{result.start:%Y-%m-%d %H:%M} to {result.end:%Y-%m-%d %H:%M} UTC, over {len(key_ids)} keys and "
            f"{len(models)} models ({', '.join(model.requested for model in models)}); "
            f"{result.cells:,} rollup cells."
        )
        self.stdout.write(f"{result.seconds:.1f} s: {result.rows_per_second:,.0f} rows/s")
