"""Small set-based SQL helpers that work on PostgreSQL and on the SQLite default."""

import json
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, partial
from typing import Any, TypeVar, cast

from django.db import IntegrityError, OperationalError, connection, models, transaction
from django.db.models import Aggregate, Field

logger = logging.getLogger(__name__)
T = TypeVar("T")

# SQLite allows 32766 bound variables per statement; stay well below.
_MAX_PARAMS = 30000


def _column(field: Field) -> str:
    return str(field.column)


class SqlNames:
    """A model's table and columns as quoted SQL names, from its metadata, for SQL
    written by hand: ``table``, and the column of each field by the field's name (a
    foreign key's ``…_id``), by attribute or by key (for ``str.format_map``)::

        handoff = SqlNames(Handoff)
        f"UPDATE {handoff.table} h SET {handoff.status} = %(status)s WHERE h.{handoff.id} = %(id)s"

    Enum values go in as parameters, never in the text."""

    def __init__(self, model: type[models.Model]):
        self._meta = model._meta
        self.table = connection.ops.quote_name(model._meta.db_table)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> str:
        return connection.ops.quote_name(_column(cast(Field, self._meta.get_field(name))))


class RawJson(str):
    """A value for a JSONField that is already serialised JSON text: written as is,
    so a caller that has the text (e.g. to measure or hash it) does not pay for a
    second ``json.dumps``."""


# Field types whose values psycopg2 adapts natively: on PostgreSQL their
# get_db_prep_save is the identity for the Python types callers pass here.
_PG_NATIVE_TYPES = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "BooleanField",
    "CharField",
    "DateTimeField",
    "EmailField",
    "ForeignKey",
    "IntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SlugField",
    "SmallIntegerField",
    "TextField",
    "UUIDField",
}


_RETURNED_AS_IS = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "CharField",
    "EmailField",
    "ForeignKey",
    "IntegerField",
    "SlugField",
    "TextField",
}


def _json_text(field: Field) -> Callable[[Any], Any]:
    encoder = getattr(field, "encoder", None)

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, RawJson):
            return value
        return json.dumps(value, cls=encoder)

    return convert


def _preparer(fields: Sequence[Field]) -> Callable[[Sequence[Any]], list[Any]]:
    """A function preparing one row's values for the database.

    ``get_db_prep_save`` costs microseconds per value through Django's field
    machinery, which adds up to most of a 1000-row write. On PostgreSQL the types
    psycopg2 adapts natively pass through; JSON becomes its text (cast to ``jsonb``
    in the statement); anything else takes the general path.
    """
    postgres = connection.vendor == "postgresql"
    converters: list[Callable[[Any], Any] | None] = []
    for field in fields:
        kind = field.get_internal_type()
        if kind == "JSONField":
            converters.append(_json_text(field))
        elif postgres and kind in _PG_NATIVE_TYPES:
            converters.append(None)
        else:
            converters.append(partial(_prep_save, field))
    if not any(converters):
        return list
    return lambda row: [
        value if convert is None else convert(value) for convert, value in zip(converters, row, strict=True)
    ]


def _prep_save(field: Field, value: Any) -> Any:
    return field.get_db_prep_save(value, connection)


def _python_converters(fields: Sequence[Field]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """Turns a returned row into Python values, skipping ``to_python`` where the
    driver already returns them: integers and text, and UUIDs on PostgreSQL."""
    as_is = _RETURNED_AS_IS | ({"UUIDField"} if connection.vendor == "postgresql" else set())
    needed = [None if field.get_internal_type() in as_is else field for field in fields]
    if not any(needed):
        return tuple
    return lambda row: tuple(
        value if field is None else field.to_python(value) for field, value in zip(needed, row, strict=True)
    )


def pg_array(values: Sequence[Any]) -> Any:
    """A PostgreSQL array parameter. psycopg2 adapts a list element by element
    through Python (about 6 µs a datetime, 2.5 µs an integer); lists of integers or
    of datetimes, most of what ingest sends, are written as one array literal."""
    kinds = {type(value) for value in values}
    if kinds == {int}:
        return "{" + ",".join(map(str, values)) + "}"
    if kinds and kinds <= {datetime, type(None)}:
        return "{" + ",".join("NULL" if value is None else f'"{value.isoformat()}"' for value in values) + "}"
    return list(values)


# Rows per statement on PostgreSQL, where a chunk costs one parameter per column.
_PG_CHUNK_ROWS = 5000


@dataclass
class _RowSource:
    """A chunk of rows as SQL: ``values[i]`` is the expression of column i (``v.columnK``,
    or ``%s`` for a value every row shares), ``from_sql`` the FROM item ``v``.
    Parameters: ``value_params`` (in column order), then ``from_params``."""

    values: list[str]
    value_params: list[Any]
    from_sql: str
    from_params: list[Any]


@dataclass(frozen=True)
class _Columns:
    """What writing rows of these fields needs from their metadata, worked out once per
    process (``_columns``): a single-event request paid ``Field.db_type`` and the
    preparers' type checks on every statement, dozens of calls per request."""

    prepare: Callable[[Sequence[Any]], list[Any]]
    db_types: tuple[str, ...]  # PostgreSQL: each column's type, for its array's cast


@cache
def _columns(fields: tuple[Field, ...], vendor: str) -> _Columns:
    db_types = tuple(str(field.db_type(connection)) for field in fields) if vendor == "postgresql" else ()
    return _Columns(prepare=_preparer(fields), db_types=db_types)


def _row_sources(fields: Sequence[Field], rows: Iterable[Sequence[Any]], *, varying: int = 0) -> Iterator[_RowSource]:
    """Rows of ``fields`` as FROM items, chunk by chunk.

    On PostgreSQL each column is one array parameter, unnested: a statement of a few
    parameters instead of one per value costs far less to adapt, send and parse, and
    a column whose value every row shares is sent once. SQLite gets a VALUES list.
    The first column is always unnested, so every chunk has at least one array."""
    columns_meta = _columns(tuple(fields), connection.vendor)
    prepare = columns_meta.prepare
    prepared = [prepare(row) for row in rows]
    if connection.vendor != "postgresql":
        row_sql = "(" + ", ".join(["%s"] * len(fields)) + ")"
        chunk_size = max(1, min(1000, _MAX_PARAMS // len(fields)))
        for start in range(0, len(prepared), chunk_size):
            chunk = prepared[start : start + chunk_size]
            yield _RowSource(
                values=[f"v.column{n}" for n in range(1, len(fields) + 1)],
                value_params=[],
                from_sql=f"(VALUES {', '.join([row_sql] * len(chunk))}) AS v",
                from_params=[value for row in chunk for value in row],
            )
        return
    types = columns_meta.db_types
    for start in range(0, len(prepared), _PG_CHUNK_ROWS):
        chunk = prepared[start : start + _PG_CHUNK_ROWS]
        columns = [list(column) for column in zip(*chunk, strict=True)]
        values: list[str] = []
        value_params: list[Any] = []
        arrays: list[str] = []
        from_params: list[Any] = []
        for position, (column, db_type) in enumerate(zip(columns, types, strict=True)):
            first = column[0]
            if position > 0 and len(column) > 1 and all(value == first for value in column):
                values.append(f"%s::{db_type}")
                value_params.append(first)
                continue
            arrays.append(f"%s::{db_type}[]")
            from_params.append(pg_array(column))
            values.append(f"v.column{len(arrays)}")
        names = ", ".join(f"column{n}" for n in range(1, len(arrays) + 1))
        from_sql = f"unnest({', '.join(arrays)}) AS v({names})"
        yield _RowSource(values=values, value_params=value_params, from_sql=from_sql, from_params=from_params)


@dataclass(frozen=True)
class _InsertNames:
    fields: tuple[Field, ...]
    table: str
    columns: str
    returning: str
    to_python: Callable[[Sequence[Any]], tuple[Any, ...]]


@cache
def _insert_names(
    model: type[models.Model], columns: tuple[str, ...], returning: tuple[str, ...], vendor: str
) -> _InsertNames:
    """An insert's fields and quoted names, from the model's metadata once per process."""
    meta = model._meta
    quote = connection.ops.quote_name
    fields = tuple(cast(Field, meta.get_field(name)) for name in columns)
    returning_fields = [cast(Field, meta.get_field(name)) for name in returning]
    return _InsertNames(
        fields=fields,
        table=quote(meta.db_table),
        columns=", ".join(quote(_column(field)) for field in fields),
        returning=", ".join(quote(_column(field)) for field in returning_fields),
        to_python=_python_converters(returning_fields),
    )


def insert_ignore_conflicts_returning(
    model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING …`` in chunks; returns the rows
    actually inserted (a conflicting row returns nothing), as Python values (a UUID
    comes back as a UUID whatever the database stores)."""
    insert = _insert_names(model, tuple(columns), tuple(returning), connection.vendor)
    to_python = insert.to_python
    inserted: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for source in _row_sources(insert.fields, rows):
            # Identifiers and types come from model metadata; every value is a bound parameter.
            sql = f"INSERT INTO {insert.table} ({insert.columns}) SELECT {', '.join(source.values)}"  # noqa: S608
            sql += f" FROM {source.from_sql} WHERE true ON CONFLICT DO NOTHING RETURNING {insert.returning}"
            cursor.execute(sql, [*source.value_params, *source.from_params])
            inserted.extend(to_python(row) for row in cursor.fetchall())
    return inserted


@dataclass(frozen=True)
class _UpdateNames:
    fields: tuple[Field, ...]  # the primary key, then the targets
    table: str
    pk: str
    targets: tuple[str, ...]


@cache
def _update_names(model: type[models.Model], fields: tuple[str, ...], vendor: str) -> _UpdateNames:
    """An update's fields and quoted names, from the model's metadata once per process."""
    meta = model._meta
    quote = connection.ops.quote_name
    pk_field = cast(Field, meta.pk)
    targets = [cast(Field, meta.get_field(name)) for name in fields]
    return _UpdateNames(
        fields=(pk_field, *targets),
        table=quote(meta.db_table),
        pk=quote(_column(pk_field)),
        targets=tuple(quote(_column(field)) for field in targets),
    )


def update_from_values(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Set ``fields`` of many rows in one statement per chunk: ``UPDATE t SET f = v.columnN
    FROM <rows> AS v WHERE t.pk = v.column1``. Each row is (pk, *values).

    ``bulk_update`` builds a CASE per field and value in Python, which costs far more
    than the SQL; this prepares each value once (see ``_row_sources``)."""
    update = _update_names(model, tuple(fields), connection.vendor)
    table = update.table
    updated = 0
    with connection.cursor() as cursor:
        for source in _row_sources(update.fields, rows):
            assignments = ", ".join(
                f"{column} = {value}" for column, value in zip(update.targets, source.values[1:], strict=True)
            )
            # Identifiers and types come from model metadata; every value is a bound parameter.
            sql = f"UPDATE {table} SET {assignments} FROM {source.from_sql}"  # noqa: S608
            sql += f" WHERE {table}.{update.pk} = {source.values[0]}"
            cursor.execute(sql, [*source.value_params, *source.from_params])
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


# --- The median: in SQL where the database has it, else in Python ----------------------------------
MedianValue = TypeVar("MedianValue", float, timedelta)


def database_has_median() -> bool:
    """PostgreSQL computes ``Median``; SQLite (the embedded default) has no
    ``percentile_cont``, so callers compute ``median_in_python`` there."""
    return connection.vendor == "postgresql"


class Median(Aggregate):
    """PostgreSQL's ``percentile_cont(0.5)``: the median, interpolated between the two
    middle values, of numbers or intervals (its type is the expression's).
    ``median_in_python`` is its twin for databases without it."""

    function = "PERCENTILE_CONT"
    name = "Median"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"


def median_in_python(values: Iterable[MedianValue]) -> MedianValue | None:
    """``Median`` in Python: the middle value, or the mean of the two middle ones; None
    without values."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
