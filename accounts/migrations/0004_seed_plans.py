"""The three plans every installation starts with. Operators edit them or add their own; a plan that
already exists under one of these names is left as it is."""

from decimal import Decimal

from django.db import migrations

PLANS = [
    # name, rpm, tpm, concurrency, monthly budget (USD), allowed models ([] = every model)
    ("free", 20, 40_000, 2, Decimal("5"), []),
    ("pro", 600, 1_000_000, 50, Decimal("500"), []),
    ("enterprise", 10_000, 20_000_000, 500, None, []),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    for name, rpm, tpm, concurrency, budget, models in PLANS:
        Plan.objects.get_or_create(
            name=name,
            defaults={
                "rpm_limit": rpm,
                "tpm_limit": tpm,
                "concurrency_limit": concurrency,
                "monthly_budget": budget,
                "allowed_models": models,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_governance")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
