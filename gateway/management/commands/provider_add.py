"""`manage.py provider_add NAME --kind KIND --base-url URL
[--credential-env VAR] [--models id1,id2] [--read-timeout S]`: register or update a provider.

The credential is read from the environment variable named by --credential-env, never from the
command line, so it lands in neither the shell history nor `ps`. Each model in --models gets a route
of the same public name served by this provider; a model with a list price in the default catalog
(gateway/catalog.toml) is priced, any other is recorded at zero cost until a price is set in
the admin, and the command says so. Run it again to change a provider: omitted options keep their
current values. Bad input exits 1 with one sentence and changes nothing.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser
from django.core.validators import validate_slug
from django.db import transaction

from accounts.audit import Actor
from accounts.management.commands._cli import command_error, csv_list, positive_decimal
from billing.selectors import price_schedule
from billing.services import model_price_set
from config.command import OperatorCommand
from gateway.catalogsync import list_prices
from gateway.models import Provider
from gateway.providers import ADAPTERS
from gateway.services import deployment_upsert, provider_upsert, route_upsert


class Command(OperatorCommand):
    help = "Register (or update) an upstream provider and route the given models to it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Short unique name: letters, digits, '-' and '_'.")
        parser.add_argument(
            "--kind", required=True, help=f"The upstream's wire format: {', '.join(ADAPTERS)}."
        )
        parser.add_argument(
            "--base-url", required=True, help="Up to and including /v1, e.g. https://api.openai.com/v1"
        )
        parser.add_argument(
            "--credential-env",
            metavar="VAR",
            help="Name of the environment variable holding the provider's API key (e.g. OPENAI_API_KEY).",
        )
        parser.add_argument(
            "--models", metavar="ID,ID", help="Upstream model ids to route, each under the same public name."
        )
        parser.add_argument(
            "--read-timeout", metavar="S", help="Seconds to wait for the next bytes upstream."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name: str = options["name"]
        kind: str = options["kind"]
        base_url: str = options["base_url"].strip().rstrip("/")
        try:
            validate_slug(name)
        except ValidationError:
            raise CommandError(
                f"{name!r} is not a valid provider name: use letters, digits, '-' and '_'."
            ) from None
        if kind not in ADAPTERS:
            raise CommandError(f"--kind must be one of {', '.join(ADAPTERS)}, not {kind!r}.")
        # Deliberately lenient (single-label hosts such as http://vllm:8000/v1 are normal on a private
        # network); the service's own validation has the last word.
        url = urlsplit(base_url)
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise CommandError(
                f"--base-url must be an http(s) URL such as https://api.openai.com/v1, not {base_url!r}."
            )
        credential = self._credential(options["credential_env"])
        if (
            kind != "mock"
            and credential is None
            and not Provider.objects.filter(name=name, credential_encrypted__gt="").exists()
        ):
            raise CommandError(
                f"--kind {kind} needs a credential: put it in an environment variable and name that "
                "variable with --credential-env."
            )
        models = csv_list("--models", options["models"]) or []
        read_timeout = positive_decimal(
            "--read-timeout", options["read_timeout"], places=2, maximum=Decimal("9999.99")
        )

        priced = price_schedule()
        known = list_prices()  # the default catalog's (gateway/catalog.toml)
        unpriced: list[str] = []
        shared: list[str] = []
        try:
            with transaction.atomic():
                provider = provider_upsert(
                    name=name, kind=kind, base_url=base_url, credential=credential, read_timeout=read_timeout
                )
                for model in models:
                    try:
                        route = route_upsert(name=model)
                    except ValidationError as exc:  # the route's name rule (accounts.validators)
                        raise command_error(exc, {"name": "--models"}) from None
                    deployment_upsert(route=route, provider=provider, upstream_model=model)
                    others = route.deployments.filter(enabled=True).exclude(provider=provider)
                    shared += [f"{model} ({d.provider.name})" for d in others.select_related("provider")]
                    if model in priced:
                        continue  # an operator's price (or an earlier list price) stays as it is
                    if model in known:
                        listed = known[model]
                        model_price_set(
                            model=model,
                            input_per_mtok=listed.input,
                            cached_input_per_mtok=listed.cached_input,
                            output_per_mtok=listed.output,
                            cache_write_per_mtok=listed.cache_write,
                            cache_write_1h_per_mtok=listed.cache_write_1h,
                            effective_from=listed.effective_from,
                            actor=Actor.command("provider_add"),
                        )
                    else:
                        unpriced.append(model)
        except ValidationError as exc:
            raise command_error(exc) from None

        routed = f"; routes: {', '.join(models)}" if models else ""
        self.stdout.write(f"Provider {provider.name} ({provider.kind}, {provider.base_url}) saved{routed}.")
        if shared:
            self.stdout.write(
                f"Note: other providers serve these routes too, and calls are spread between them: "
                f"{', '.join(shared)}. Disable a deployment in the admin (Gateway > Model routes) to stop that."
            )
        for model in unpriced:
            self.stderr.write(
                f"Warning: no price is known for {model!r}; its calls are recorded at zero cost until you "
                "set one in the admin (Billing > Model prices)."
            )

    def _credential(self, variable: str | None) -> str | None:
        if variable is None:
            return None
        value = os.environ.get(variable, "").strip()
        if not value:
            raise CommandError(
                f"--credential-env names {variable}, but that environment variable is not set or empty."
            )
        return value
