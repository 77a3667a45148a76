"""JSON values as DRF's fields write them, for the API's hot rows built by hand (the
lead list, the sales queue and its claims): a serializer per row deep-copies its fields
and walks them for every object, which was a third of those requests' CPU
(bench/RESULTS.md, "Lists, part 3" and "Claims"). Each hand-built row has a test that
holds it to its documenting serializer's output."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

_two_places = serializers.DecimalField(max_digits=12, decimal_places=2, read_only=True).to_representation


def or_none(convert: Any, value: Any) -> Any:
    """``convert(value)``, and None for None (as a serializer skips a null attribute)."""
    return None if value is None else convert(value)


def decimal_text(value: Decimal) -> str:
    """A score or points: DRF's ``DecimalField(decimal_places=2)``, a string."""
    return _two_places(value)


def iso_datetime(value: datetime) -> str:
    """DRF's ISO 8601 of an aware datetime, in the current time zone, UTC as "Z" (its
    ``DateTimeField`` spent half the rows' time checking what the database guarantees)."""
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
