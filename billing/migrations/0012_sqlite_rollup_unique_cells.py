"""The model and key rollups' unique cells on SQLite (the embedded default).

On PostgreSQL their unique constraints carry INCLUDE columns, so the overview's sums are index-only
scans (0009_console_rollups). SQLite has no INCLUDE: Django then creates no constraint at all
(models.W039), and the rollup upsert's `ON CONFLICT (tenant_id, hour, …)` finds no unique index to
arbitrate on, so the embedded usage writer refused every batch. Here SQLite gets the plain unique
index on the same key columns; PostgreSQL is untouched.
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


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for _table, name, _columns in _INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0011_usagehourly_key_hour"),
    ]

    operations = [migrations.RunPython(create, drop)]
