"""Pagination of the lists: page numbers, or a cursor for the large ones (the API), and
the pages' paginator that never counts more than ``COUNT_CAP`` rows.

The API's query parameters are read as the schema states them (leadflow.query): each
given once, ``page`` a whole number from 1, ``page_size`` one from 1 to
``max_page_size``. A bad value answers 400 saying what to send, where DRF would
quietly use the last of several values, fall back to the default size or cap it.
A page past the last answers 404, as in DRF.
"""

import math
from collections.abc import Sequence
from typing import Any

from django.core.paginator import EmptyPage, Page, Paginator
from django.utils.functional import cached_property
from rest_framework import pagination
from rest_framework.request import Request
from rest_framework.response import Response

from leadflow.query import query_value, whole_number

# Lists count their rows up to this many; past it they say "more than 1,000".
COUNT_CAP = 1000


class CappedCountPaginator(Paginator):
    """Django's paginator that counts at most ``COUNT_CAP`` + 1 rows (one statement that
    stops there), so a list of 1M leads costs no COUNT(*) of every row on each load
    (0.1–0.4 s at 1M, bench/reads.py). Up to the cap, the count and the pages are Django's;
    past it, ``count_exact`` is False, the count reads as "more than ``COUNT_CAP``", a page
    reads one row more than it shows to know whether a next one exists (``CappedPage``),
    and any page number is accepted until one comes back empty."""

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        """The rows, or ``cap`` + 1 when there are more than ``cap``."""
        rows: Any = self.object_list
        if not hasattr(rows, "order_by"):  # a list: its length is known
            return len(rows)
        return int(rows.order_by()[: self.cap + 1].count())

    @property
    def count_exact(self) -> bool:
        return self.count <= self.cap

    @cached_property
    def num_pages(self) -> int:
        """The last page when the count is exact; else the last page known to exist."""
        if self.count_exact:
            return int(super().num_pages)
        return math.ceil(self.count / self.per_page)

    def validate_number(self, number: Any) -> int:
        if self.count_exact:
            return int(super().validate_number(number))
        try:
            return int(super().validate_number(number))
        except EmptyPage:
            if isinstance(number, int | str) and str(number).isdigit() and int(number) >= 1:
                return int(number)  # past the pages the capped count vouches for: read it
            raise

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        if self.count_exact:
            return super().page(number)
        bottom = (number - 1) * self.per_page
        rows: Any = self.object_list[bottom : bottom + self.per_page + 1]
        return self.page_of(rows, number)

    def page_of(self, rows: Sequence[Any], number: int) -> Page:
        """A page past the cap from ``rows``: up to a page and one more row (which says a
        next page exists). An empty page past the first is no page (EmptyPage)."""
        rows = list(rows)
        if not rows and number > 1:
            raise EmptyPage("That page contains no results")
        return CappedPage(rows[: self.per_page], number, self, more=len(rows) > self.per_page)


class CappedPage(Page):
    """A page of a list counted past its cap: whether a next page exists is known from
    the row read after this page's, not from the count."""

    def __init__(self, object_list: Any, number: int, paginator: Any, *, more: bool) -> None:
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more

    def end_index(self) -> int:
        return int(self.start_index()) + len(self.object_list) - 1


class _CheckedPageSize:
    page_size: int | None = 50
    page_size_query_param: str | None = "page_size"
    max_page_size: int | None = 200

    def get_page_size(self, request: Request) -> int | None:
        if self.page_size_query_param is None:
            return self.page_size
        return whole_number(request, self.page_size_query_param, maximum=self.max_page_size) or self.page_size

    def page_size_parameter(self) -> dict[str, Any]:
        return {
            "name": self.page_size_query_param,
            "required": False,
            "in": "query",
            "description": f"Results per page, 1 to {self.max_page_size} (default {self.page_size}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
        }


class PageNumberPagination(_CheckedPageSize, pagination.PageNumberPagination):
    """Page numbers over ``CappedCountPaginator``: ``count`` is exact up to ``COUNT_CAP``
    rows (``count_exact`` true); past it, it is ``COUNT_CAP`` + 1 and ``count_exact``
    false ("more than 1,000"), and ``next`` is there while rows are."""

    django_paginator_class = CappedCountPaginator
    last_page_strings = ()  # the schema promises a number
    invalid_page_message = "There is no page {page_number}: follow the `next` links from page 1."

    def get_paginated_response(self, data: Any) -> Response:
        response = super().get_paginated_response(data)
        response.data["count_exact"] = self.page.paginator.count_exact  # type: ignore[union-attr]
        return response

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        paginated = super().get_paginated_response_schema(schema)
        paginated["properties"]["count"]["description"] = (
            f"The rows, exact up to {COUNT_CAP:,}; past that {COUNT_CAP + 1:,} (see count_exact)."
        )
        paginated["properties"]["count_exact"] = {
            "type": "boolean",
            "description": f"false: there are more than {COUNT_CAP:,} rows and count is {COUNT_CAP + 1:,}.",
        }
        paginated["required"] = [*paginated.get("required", []), "count_exact"]
        return paginated

    def get_page_number(self, request: Request, paginator: Any) -> int:
        return whole_number(request, self.page_query_param) or 1

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        page = {
            "name": self.page_query_param,
            "required": False,
            "in": "query",
            "description": "Page number, from 1.",
            "schema": {"type": "integer", "minimum": 1},
        }
        return [page, self.page_size_parameter()]


class CursorPagination(_CheckedPageSize, pagination.CursorPagination):
    invalid_cursor_message = "Invalid cursor: use the `next` or `previous` link of a page as it is."

    def decode_cursor(self, request: Request) -> Any:
        query_value(request, self.cursor_query_param)  # given at most once
        return super().decode_cursor(request)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        cursor = {
            "name": self.cursor_query_param,
            "required": False,
            "in": "query",
            "description": "The `next` or `previous` link's cursor, as it is.",
            "schema": {"type": "string", "minLength": 1},
        }
        return [cursor, self.page_size_parameter()]
