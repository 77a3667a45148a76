"""Saved views of the leads list: a person names the list's current filters and finds
them again as a link. Writes (``saved_view_create``, ``saved_view_delete``) and reads
(``saved_views_of``, ``saved_view_get``); every one is scoped to its owner, so another
person's view is not found (404 on the pages)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import QueryDict

from leadflow.leads.models import SavedView

# The leads list's parameters (``forms.LeadFilterForm``) a view keeps; the page number and
# anything else in the query string are dropped.
SAVED_VIEW_PARAMS = (
    "q",
    "stage",
    "score_min",
    "score_max",
    "source",
    "active_from",
    "active_to",
    "created_from",
    "created_to",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "owner",
    "sort",
    "model",
    "account",
    "stale",
)
NAME_MAX = SavedView._meta.get_field("name").max_length or 100
QUERY_MAX = SavedView._meta.get_field("query").max_length or 2000


def saved_view_query(raw: str) -> str:
    """``raw`` (a query string) with only the list's filter parameters, blank values
    dropped, in the order of ``SAVED_VIEW_PARAMS``."""
    given = QueryDict(raw.lstrip("?"))
    kept = QueryDict(mutable=True)
    for name in SAVED_VIEW_PARAMS:
        values = [value.strip() for value in given.getlist(name) if value.strip()]
        if values:
            kept.setlist(name, values)
    return kept.urlencode()


def saved_view_create(*, user: Any, name: str, query: str) -> SavedView:
    """Save the leads list's filters ``query`` as ``name`` for ``user``. Raises
    ValidationError by field (``name``, ``query``)."""
    name = " ".join(name.split())
    kept = saved_view_query(query)
    errors: dict[str, list[str]] = {}
    if not name:
        errors["name"] = ["Name the view, e.g. “Spring campaign MQLs”."]
    elif len(name) > NAME_MAX:
        errors["name"] = [f"Use at most {NAME_MAX} characters for the name."]
    elif SavedView.objects.filter(user=user, name=name).exists():
        errors["name"] = [f"You already have a view called “{name}”: choose another name or delete that one first."]
    if not kept:
        errors["query"] = ["Filter the list first: a view without filters is the whole list."]
    elif len(kept) > QUERY_MAX:
        errors["query"] = ["These filters are too long to save: shorten the search text."]
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            return SavedView.objects.create(user=user, name=name, query=kept)
    except IntegrityError:  # saved twice at once
        raise ValidationError({"name": [f"You already have a view called “{name}”."]}) from None


def saved_views_of(*, user: Any) -> QuerySet[SavedView]:
    return SavedView.objects.filter(user=user).order_by("name", "id")


def saved_view_get(*, user: Any, view_id: int) -> SavedView | None:
    """The user's own view ``view_id``; None for anyone else's (or none)."""
    return SavedView.objects.filter(user=user, pk=view_id).first()


def saved_view_delete(*, view: SavedView) -> None:
    view.delete()
