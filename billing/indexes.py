"""Index types that PostgreSQL has and SQLite (the embedded mode) does not."""

from __future__ import annotations

from typing import Any

from django.db import models


class BrinOnPostgres(models.Index):
    """A BRIN index on PostgreSQL, a plain one elsewhere.

    For a column that grows with the table's physical order, such as the time a usage row was
    written: a BRIN index keeps one summary per range of pages instead of one entry per row, so
    it is a few hundred kilobytes for hundreds of millions of rows and costs an insert next to
    nothing, while a time-range scan (the retention purge, a day's usage) still reads only the
    pages of that range. `django.contrib.postgres.indexes.BrinIndex` would refuse to migrate SQLite.
    """

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor == "postgresql":
            using = " USING brin"
        return super().create_sql(model, schema_editor, using=using, **kwargs)
