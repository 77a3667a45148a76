"""Small set-based SQL helpers that work on PostgreSQL and on the SQLite default."""

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from django.db import IntegrityError, OperationalError, connection, models, transaction
from django.db.models import Field

logger = logging.getLogger(__name__)
T = TypeVar("T")

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


def update_from_values(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Set ``fields`` of many rows in one statement: ``UPDATE t SET f = v.columnN FROM
    (VALUES (pk, …), …) AS v WHERE t.pk = v.column1``. Each row is (pk, *values).

    ``bulk_update`` builds a CASE per field and value in Python, which costs far more
    than the SQL; this prepares each value once. PostgreSQL needs the VALUES columns
    cast to the target types; SQLite (3.33+) takes them as they are."""
    meta = model._meta
    pk_field = cast(Field, meta.pk)
    targets = [cast(Field, meta.get_field(name)) for name in fields]
    quote = connection.ops.quote_name
    postgres = connection.vendor == "postgresql"

    def value_sql(position: int, field: Field) -> str:
        column = f"v.column{position}"
        return f"CAST({column} AS {field.db_type(connection)})" if postgres else column

    assignments = ", ".join(
        f"{quote(_column(field))} = {value_sql(position, field)}" for position, field in enumerate(targets, start=2)
    )
    all_fields = [pk_field, *targets]
    row_sql = "(" + ", ".join(["%s"] * len(all_fields)) + ")"
    prepared = [
        [field.get_db_prep_save(value, connection) for field, value in zip(all_fields, row, strict=True)]
        for row in rows
    ]
    chunk_size = max(1, min(1000, _MAX_PARAMS // len(all_fields)))
    table = quote(meta.db_table)
    updated = 0
    with connection.cursor() as cursor:
        for start in range(0, len(prepared), chunk_size):
            chunk = prepared[start : start + chunk_size]
            values_sql = ", ".join([row_sql] * len(chunk))
            # Identifiers and types come from model metadata; every value is a bound parameter.
            sql = f"UPDATE {table} SET {assignments} FROM (VALUES {values_sql}) AS v"  # noqa: S608
            sql += f" WHERE {table}.{quote(_column(pk_field))} = {value_sql(1, pk_field)}"
            cursor.execute(sql, [value for row in chunk for value in row])
            updated += cursor.rowcount
    return updated


RETRYABLE_PG_CODES = {"40P01", "40001", "23505"}  # deadlock, serialization failure, unique violation


def atomic_with_retry(function: Callable[[], T], *, attempts: int = 3) -> T:
    """Run ``function`` in a transaction, retrying it from scratch when a concurrent
    transaction made it fail (deadlock, serialization failure, or a unique key taken
    between our read and our write). Inside an outer transaction it runs once: only
    the outermost caller can retry."""
    if connection.in_atomic_block:
        return function()
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return function()
        except (OperationalError, IntegrityError) as error:
            code = getattr(error.__cause__, "pgcode", None)
            if code not in RETRYABLE_PG_CODES or attempt == attempts:
                raise
            logger.info("Retrying after a concurrent conflict (%s), attempt %d", code, attempt)
            time.sleep(random.uniform(0.005, 0.05) * attempt)  # noqa: S311 -- jitter, not security
    raise AssertionError("unreachable")
