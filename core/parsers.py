"""Request bodies and query strings are checked at the edge of the API.

Every request body and query string is checked for text PostgreSQL cannot
store (`core.text`), for nesting and for size first, and answered with a 400
(or 413) instead of failing deep inside a request.

Public surface:
    StrictJSONParser, StrictFormParser, StrictMultiPartParser   DRF parsers that refuse it
                               (JSON and form bodies past AGENTRY_MAX_BODY_BYTES too)
    RejectInvalidQueryMiddleware   the same check (and a length cap) for query
                                   strings of API requests
"""

from __future__ import annotations

import io
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from core.text import (
    INVALID_TEXT_MESSAGE,
    TOO_DEEP_MESSAGE,
    invalid_text_path,
    is_too_deep,
)


def _check(data: Any) -> Any:
    if hasattr(data, "lists"):  # a QueryDict: every value of every key
        data = dict(data.lists())
    if is_too_deep(data):
        raise ParseError(TOO_DEEP_MESSAGE)
    where = invalid_text_path(data)
    if where:
        raise ParseError(f"{where}: {INVALID_TEXT_MESSAGE}")
    return data


def _too_large() -> Exception:
    from django.conf import settings

    # Imported here: core.errors imports DRF's views, which read the parser
    # settings that name this module.
    from core.errors import PayloadTooLarge

    return PayloadTooLarge(
        f"Request bodies other than uploads are limited to "
        f"{settings.AGENTRY_MAX_BODY_BYTES} bytes."
    )


def _bounded_body(stream: Any, parser_context: dict | None) -> io.BytesIO:
    """The body, read whole (JSON and forms are), refused past
    `AGENTRY_MAX_BODY_BYTES`: by its declared length before reading, and by
    what arrives for a body sent without one (chunked)."""
    from django.conf import settings

    limit = settings.AGENTRY_MAX_BODY_BYTES
    request = (parser_context or {}).get("request")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0) if request else 0
    except ValueError:
        length = 0
    if length > limit:
        raise _too_large()
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise _too_large()
    return io.BytesIO(body)


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = _bounded_body(stream, parser_context)
        try:
            data = super().parse(body, media_type, parser_context)
            _check(data)
        except RecursionError:
            raise ParseError(TOO_DEEP_MESSAGE) from None
        return data


class StrictFormParser(FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        body = _bounded_body(stream, parser_context)
        data = super().parse(body, media_type, parser_context)
        _check(data)
        return data


class StrictMultiPartParser(MultiPartParser):
    """Multipart forms of endpoints that take no upload (sign-in and the like):
    capped like any other body and their fields checked. Upload endpoints use
    their own parser, bounded by the upload size."""

    def parse(self, stream, media_type=None, parser_context=None):
        # Django's multipart parsing needs the declared length (a body without
        # one parses as empty), so the declared length is the whole check.
        _bounded_body(None, parser_context)
        result = super().parse(stream, media_type, parser_context)
        _check(result.data)
        return result


#: Longest value of one query parameter of an API request: ids, cursors and
#: searches are far shorter, and a filter's LIKE pattern past SQLite's 50,000
#: bytes is a database error rather than an answer.
MAX_QUERY_VALUE_CHARS = 2000


def _query_problem(request: HttpRequest) -> str | None:
    values = dict(request.GET.lists())
    if invalid_text_path(values):
        return f"Query string: {INVALID_TEXT_MESSAGE}"
    for name, given in values.items():
        if any(len(value) > MAX_QUERY_VALUE_CHARS for value in given):
            return f"Query parameter {name!r} is longer than {MAX_QUERY_VALUE_CHARS} characters."
    return None


class RejectInvalidQueryMiddleware:
    """Answers 400 for an API request whose query string decodes to NUL or
    holds a value longer than `MAX_QUERY_VALUE_CHARS`."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = _query_problem(request) if request.path.startswith("/api/") else None
        if problem:
            # Imported here: core.errors imports DRF's views, which read the
            # parser settings that name this module.
            from core.errors import error_body

            return JsonResponse(error_body("invalid_request", problem), status=400)
        return self.get_response(request)
