"""Query parameters of the API, read as the OpenAPI schema states them.

DRF and django-filter are lenient with query parameters: of a repeated one they
take the last value, and an empty, unknown or malformed value is often quietly
ignored. A client that sent something other than it meant then gets the answer
to a question it did not ask. Here a parameter that takes one value takes it
once and not empty, a boolean is ``true`` or ``false``, a number is a number in
range, an ordering names fields that can order; anything else answers 400
naming the parameter and what to send. Leave a parameter out to not use it.
"""

from datetime import UTC, datetime
from typing import Any

import django_filters
from django import forms
from django.core.validators import slug_re
from django.db.models import QuerySet
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework import filters
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request


def _misuse(name: str, values: list[str]) -> str | None:
    """What is wrong with the values given for a single-valued parameter, if anything."""
    if len(values) > 1:
        return f"Give {name} once, not {len(values)} times."
    if values and not values[0]:
        return f"Give {name} a value, or leave it out."
    return None


def query_value(request: Request, name: str) -> str | None:
    """The value of query parameter ``name``; None when it is absent."""
    values = request.query_params.getlist(name)
    if problem := _misuse(name, values):
        raise ValidationError({name: [problem]})
    return values[0] if values else None


def whole_number(request: Request, name: str, *, maximum: int | None = None) -> int | None:
    """Query parameter ``name`` as a whole number from 1 (to ``maximum``); None when absent."""
    raw = query_value(request, name)
    if raw is None:
        return None
    upper = f" to {maximum}" if maximum is not None else ""
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationError({name: [f"Give {name} as a whole number from 1{upper}, not {raw[:20]!r}."]})
    # Past any real count, and int() refuses strings of thousands of digits.
    number = int(raw) if len(raw) < 19 else 10**18
    if number < 1 or (maximum is not None and number > maximum):
        raise ValidationError({name: [f"Give {name} as a whole number from 1{upper}, not {raw[:20]!r}."]})
    return number


# Django's form fields refuse text with a NUL character (400): the schema says so.
TEXT_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"}
SLUG_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[-a-zA-Z0-9_]+$", "maxLength": 100}


def slug_value(request: Request, name: str) -> str | None:
    """Query parameter ``name`` as a slug (letters, digits, '-' and '_'); None when absent."""
    raw = query_value(request, name)
    if raw is not None and not (len(raw) <= SLUG_SCHEMA["maxLength"] and slug_re.match(raw)):
        raise ValidationError({name: [f"Give {name} as a slug (letters, digits, '-' and '_'), not {raw[:40]!r}."]})
    return raw


class _Documented(django_filters.Filter):
    """A filter whose schema is ``schema`` (with its help_text), not what drf-spectacular infers."""

    schema: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # On the instance: an override on the class would drop each filter's help_text.
        extend_schema_field({**self.schema, "description": kwargs.get("help_text", "")})(self)


class TextFilter(_Documented, django_filters.CharFilter):
    """Free text."""

    schema = TEXT_SCHEMA


class NumberFilter(_Documented, django_filters.NumberFilter):
    """A number; django-filter refuses one above 1e50."""

    schema = {"type": "number", "maximum": 1e50}


class SlugFilter(_Documented, django_filters.CharFilter):
    """A slug, such as a source's."""

    field_class = forms.SlugField
    schema = SLUG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", SLUG_SCHEMA["maxLength"])
        super().__init__(*args, **kwargs)


def as_utc(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC. ISO 8601 allows UTC offsets up to ±23:59, PostgreSQL only to ±15:59."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValidationError({name: ["Out of range: give a date-time from year 1 to 9999 in UTC."]}) from None


class UtcDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        try:
            return None if moment is None else moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("Out of range: give a date-time from year 1 to 9999 in UTC.") from None


class DateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time with any UTC offset, compared in UTC."""

    field_class = UtcDateTimeField


class StrictBooleanField(forms.Field):
    def to_python(self, value: Any) -> bool | None:
        if value in (None, ""):
            return None
        if value in ("true", "false"):
            return value == "true"
        raise forms.ValidationError("Use true or false.")


class BooleanFilter(django_filters.BooleanFilter):
    """``true`` or ``false``; django-filter's own ignores any other value."""

    field_class = StrictBooleanField


class FilterSet(django_filters.FilterSet):
    """A FilterSet whose single-valued filters refuse a repeated or empty parameter
    (django-filter would use the last value, or ignore an empty one)."""

    def is_valid(self) -> bool:
        valid = super().is_valid()
        for name, declared in self.filters.items():
            if isinstance(declared, django_filters.MultipleChoiceFilter) or not hasattr(self.data, "getlist"):
                continue
            if problem := _misuse(name, self.data.getlist(name)):
                self.form.add_error(name, problem)
                valid = False
        return valid


class OrderingFilter(filters.OrderingFilter):
    """DRF's ordering (fields, comma-separated, '-' first for descending), given at most
    once and naming only fields that order; DRF would drop the others silently."""

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        raw = query_value(request, self.ordering_param)
        if raw is None:
            return self.get_default_ordering(view)
        valid = {name for name, _label in self.get_valid_fields(queryset, view, {"request": request})}
        terms = raw.split(",")
        if any(term.removeprefix("-") not in valid for term in terms):
            allowed = ", ".join(sorted(valid))
            message = f"Order by {allowed}, comma-separated, with '-' first for descending; not {raw[:60]!r}."
            raise ValidationError({self.ordering_param: [message]})
        return terms

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        term = f"-?(?:{'|'.join(getattr(view, 'ordering_fields', None) or [])})"
        parameter = {
            "name": self.ordering_param,
            "required": False,
            "in": "query",
            "description": "Fields to order by, comma-separated; '-' first for descending.",
            "schema": {"type": "string", "pattern": f"^{term}(?:,{term})*$"},
        }
        return [parameter]
