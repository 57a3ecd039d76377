"""Pagination of list endpoints: `{"results", "next", "previous"}` everywhere.

`StandardPagination` pages ordinary lists by number. `SequencePagination` pages
an append-only log by position: `after_sequence` (exclusive) and `limit`, so a
client that polls or resumes asks for "everything after the last one I saw".
"""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.utils.urls import remove_query_param, replace_query_param

#: Largest value the position parameters accept (fits every database integer).
MAX_POSITION = 2**31 - 1


class StandardPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_schema_operation_parameters(self, view) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = MAX_POSITION
        return parameters

    def get_page_size(self, request: Request) -> int:
        # DRF falls back to the default on a malformed page_size; refuse it,
        # as the schema documents an integer.
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return self.page_size
        return min(
            _bounded_int(
                request, self.page_size_query_param, self.page_size, 1, MAX_POSITION
            ),
            self.max_page_size,
        )


def _bounded_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError(
            {name: [f"Must be an integer from {low} to {high}."]}
        ) from None
    if not low <= value <= high:
        raise ValidationError({name: [f"Must be an integer from {low} to {high}."]})
    return value


class SequencePagination:
    """Pages a log ordered by `sequence_number` with `after_sequence` and `limit`."""

    default_limit = 100
    max_limit = 1000

    def __init__(self, request: Request) -> None:
        self.request = request
        self.after = _bounded_int(request, "after_sequence", 0, 0, MAX_POSITION)
        self.limit = _bounded_int(
            request, "limit", self.default_limit, 1, self.max_limit
        )

    def page(self, items: list[Any], has_more: bool) -> dict[str, Any]:
        """The answer for `items` (at most `limit` of them, after `after`)."""
        url = self.request.build_absolute_uri()
        next_url = None
        if has_more and items:
            next_url = replace_query_param(
                url, "after_sequence", items[-1]["sequence_number"]
            )
        previous_url = None
        if self.after > 0:
            start = max(0, self.after - self.limit)
            previous_url = (
                replace_query_param(url, "after_sequence", start)
                if start
                else remove_query_param(url, "after_sequence")
            )
        return {"results": items, "next": next_url, "previous": previous_url}
