"""The model and key rollups' SQLite unique indexes, again.

0012 created them with raw SQL (SQLite cannot hold the INCLUDE constraints Django knows about). On
SQLite, 0016's AddField on both tables rebuilds them (copy, drop, rename), and Django only recreates
what its own state holds, so the two indexes were lost: the embedded usage writer's `ON CONFLICT
(tenant_id, hour, ...)` found nothing to arbitrate on and refused every batch (the smoke test's
"expected two priced usage rows"). Recreated here; a no-op where they exist and on PostgreSQL. Any
later migration that alters these tables on SQLite must do the same.
"""

from django.db import migrations

_INDEXES = (
    ("billing_usagehourlymodel", "usagehourlymodel_unique_cell_sqlite", "tenant_id, hour, requested_model"),
    ("billing_usagehourlykey", "usagehourlykey_unique_cell_sqlite", "tenant_id, hour, api_key_id"),
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for table, name, columns in _INDEXES:
        schema_editor.execute(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {table} ({columns})")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0018_overview_hour_indexes"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
