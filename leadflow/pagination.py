"""Pagination of the API's lists: page numbers, or a cursor for the large ones.

Their query parameters are read as the schema states them (leadflow.query): each
given once, ``page`` a whole number from 1, ``page_size`` one from 1 to
``max_page_size``. A bad value answers 400 saying what to send, where DRF would
quietly use the last of several values, fall back to the default size or cap it.
A page past the last answers 404, as in DRF.
"""

from typing import Any

from rest_framework import pagination
from rest_framework.request import Request

from leadflow.query import query_value, whole_number


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
    last_page_strings = ()  # the schema promises a number
    invalid_page_message = "There is no page {page_number}: follow the `next` links from page 1."

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
