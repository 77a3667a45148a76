"""Small set-based SQL helpers that work on PostgreSQL and on the SQLite default."""

from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.db import connection, models
from django.db.models import Field

# SQLite allows 32766 bound variables per statement; stay well below.
_MAX_PARAMS = 30000


def _column(field: Field) -> str:
    return str(field.column)


def insert_ignore_conflicts_returning(
    model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING …`` in chunks; returns the rows
    actually inserted (a conflicting row returns nothing), as Python values (a UUID
    comes back as a UUID whatever the database stores)."""
    meta = model._meta
    fields = [cast(Field, meta.get_field(name)) for name in columns]
    quote = connection.ops.quote_name
    column_sql = ", ".join(quote(_column(field)) for field in fields)
    returning_fields = [cast(Field, meta.get_field(name)) for name in returning]
    returning_sql = ", ".join(quote(_column(field)) for field in returning_fields)
    row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
    chunk_size = max(1, min(1000, _MAX_PARAMS // len(fields)))
    prepared = [
        [field.get_db_prep_save(value, connection) for field, value in zip(fields, row, strict=True)] for row in rows
    ]
    inserted: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(prepared), chunk_size):
            chunk = prepared[start : start + chunk_size]
            # Identifiers come from model metadata; every value is a bound parameter.
            values_sql = ", ".join([row_sql] * len(chunk))
            sql = f"INSERT INTO {quote(meta.db_table)} ({column_sql}) VALUES {values_sql} ON CONFLICT DO NOTHING"  # noqa: S608
            sql += f" RETURNING {returning_sql}"
            cursor.execute(sql, [value for row in chunk for value in row])
            inserted.extend(
                tuple(field.to_python(value) for field, value in zip(returning_fields, row, strict=True))
                for row in cursor.fetchall()
            )
    return inserted
