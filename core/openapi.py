"""The API's OpenAPI schema: every operation documents the errors it can answer.

`ErrorAwareAutoSchema` (DRF's `DEFAULT_SCHEMA_CLASS`) adds the standard error
responses to each operation, all with the one `Error` body of
`core.errors`, derived from the view rather than repeated on each of them:

- 400 everywhere: any API request whose query string holds NUL is refused,
  besides bodies and query parameters that fail validation;
- 401 when the view requires authentication;
- 403 for authenticated writes and detail routes (ownership, CSRF);
- 404 for routes with path parameters and paginated lists (a page past the end);
- 413 and 415 for operations that take a body;
- 429 for throttled views;
- 503 everywhere (database or channel layer unavailable).

Statuses a view declares itself keep their description; a declared error
without a body gets the `Error` body, under `application/json` only: errors
are JSON whatever the view's other media types (an SSE stream, a download).

The schema is written for generated clients (openapi-python-client among them):

- an operation that takes JSON documents JSON as its one body, even when it
  also takes forms (the auth operations): one body per operation gives a
  generated client one way to send it;
- an operation open to anonymous callers (register, login, refresh) has an
  empty `security`, so a generated client calls it without credentials.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import permissions, serializers
from rest_framework.renderers import JSONRenderer

from core.serializers import StrictCharField

#: Default descriptions of the standard error responses.
ERROR_DESCRIPTIONS = {
    400: "Invalid request (validation_error, parse_error, invalid_request).",
    401: "Missing, invalid or expired credentials.",
    403: "Not allowed to act on this object.",
    404: "No such object visible to you, or no such page.",
    409: "Conflicts with the object's current state.",
    413: "The request body is too large.",
    415: "Unsupported request content type.",
    429: "Rate limited; retry after `details.retry_after_seconds`.",
    503: "database_unavailable or stream_unavailable; retry after `Retry-After`.",
}

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ErrorDetailSerializer(serializers.Serializer):
    code = StrictCharField(help_text="Stable machine-readable code.")
    message = StrictCharField(help_text="Human-readable explanation.")
    details = serializers.DictField(
        child=serializers.JSONField(),
        help_text="Field errors or other context; may be empty.",
    )


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer: `{"error": {"code", "message", "details"}}`."""

    error = ErrorDetailSerializer()


def _requires_authentication(view: Any) -> bool:
    return not all(
        isinstance(permission, permissions.AllowAny)
        for permission in view.get_permissions()
    )


class ErrorAwareAutoSchema(AutoSchema):
    """`AutoSchema` that documents the standard error responses of each operation."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(
            path, path_regex, path_prefix, method, registry
        )
        if operation is None:
            return None
        if not _requires_authentication(self.view):
            operation["security"] = []
        responses = operation.setdefault("responses", {})
        for status_code in sorted(self._error_statuses(operation)):
            responses.setdefault(str(status_code), {})
        for code, response in list(responses.items()):
            if not code.isdigit() or int(code) < 400 or response.get("content"):
                continue
            description = response.get("description") or ERROR_DESCRIPTIONS.get(
                int(code), "Error."
            )
            # Errors are JSON whatever the view's other media types
            # (`core.errors` renders them so).
            responses[code] = self._get_response_for_code(
                OpenApiResponse(ErrorSerializer, description=description),
                code,
                media_types=[JSONRenderer.media_type],
            )
        operation["responses"] = dict(
            sorted(responses.items(), key=lambda item: item[0])
        )
        return operation

    def map_parsers(self) -> list[Any]:
        media_types = super().map_parsers()
        if JSONRenderer.media_type in media_types:
            return [JSONRenderer.media_type]
        return media_types

    def _error_statuses(self, operation: dict[str, Any]) -> set[int]:
        statuses = {400, 503}
        parameters = operation.get("parameters", [])
        has_path_parameters = any(p.get("in") == "path" for p in parameters)
        is_paginated = any(
            p.get("in") == "query" and p.get("name") == "page" for p in parameters
        )
        is_write = self.method in _WRITE_METHODS
        if _requires_authentication(self.view):
            statuses.add(401)
            if is_write or has_path_parameters:
                statuses.add(403)
        if has_path_parameters or is_paginated:
            statuses.add(404)
        if "requestBody" in operation or is_write:
            statuses |= {413, 415}
        if self.view.get_throttles():
            statuses.add(429)
        return statuses
