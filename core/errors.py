"""One error body for the whole API: `{"error": {"code", "message", "details"}}`.

`api_exception_handler` is DRF's exception handler; the `handler*` views answer
Django-level 400/403/404/500 with the same body for API paths, so a client never
has to parse an HTML error page.

A lost database connection (a restarted or failed-over PostgreSQL, a killed
backend) and an unreachable channel layer (Redis) are outages, not bugs: the
request that meets one answers 503 (`database_unavailable` /
`stream_unavailable`) with `Retry-After`, and the next request starts afresh.
Any other database error (a query the database refused) is a bug of ours: it
is logged with its traceback and answered 500 `server_error`, never a 503
that blames the database.

Public surface:
    ApiError, PayloadTooLarge, ServiceUnavailable   exceptions views raise
    outage(exc)                the 503 for an outage, else None
    is_connection_failure(exc) whether a database error means "cannot reach it"
    api_exception_handler      DRF's exception handler
    error_body(code, message, details)   the JSON error body
    bad_request, permission_denied, page_not_found, api_not_found, server_error
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.exceptions import (
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.exceptions import (
    ValidationError as DjangoValidationError,
)
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

# DRF's codes where they are already good names; otherwise a stable code per status.
_STATUS_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "service_unavailable",
}


class ApiError(exceptions.APIException):
    """An API error with an explicit code, status and optional details."""

    def __init__(
        self,
        code: str,
        message: str,
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details or {}
        # DRF's handler answers `wait` as the Retry-After header.
        self.wait = retry_after


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; try again shortly."
    default_code = "service_unavailable"


RETRY_AFTER_SECONDS = 1


# SQLite's ways of saying the database file cannot be used right now (its
# busy timeout ran out, the disk failed); any other SQLite error is a query bug.
_SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk i/o")


def is_connection_failure(exc: BaseException) -> bool:
    """Whether a database error means the database cannot be reached (down,
    restarting, our connection killed or out of connections), as opposed to a
    query it refused (too complex, bad SQL, a constraint), which is our bug."""
    if isinstance(exc, InterfaceError):
        return True  # Django's "connection already closed"
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__ or exc
    import sqlite3

    if isinstance(cause, sqlite3.Error):
        message = str(cause).lower()
        return any(phrase in message for phrase in _SQLITE_UNAVAILABLE)
    try:
        import psycopg
        from psycopg import errors as pg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    if isinstance(cause, psycopg.Error):
        if cause.sqlstate is None:
            # Raised by the client, not the server: the connection failed, was
            # lost or closed, or the pool had none to give (PoolTimeout).
            return True
        return isinstance(
            cause,
            pg.ConnectionException  # class 08
            | pg.AdminShutdown
            | pg.CrashShutdown
            | pg.CannotConnectNow
            | pg.DatabaseDropped
            | pg.IdleSessionTimeout
            | pg.TooManyConnections,
        )
    return False


def outage(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 for an exception that means a backing service is down, else None."""
    if is_connection_failure(exc):
        return ServiceUnavailable(
            "The database is unavailable; try again shortly.", "database_unavailable"
        )
    import redis.exceptions

    if isinstance(
        exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError
    ):
        return ServiceUnavailable(
            "Live streaming is unavailable (the channel layer cannot be reached); "
            "try again shortly.",
            "stream_unavailable",
        )
    return None


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key in ("non_field_errors", "detail") else f"{key}: {inner}"
    return str(detail)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, Http404 | ObjectDoesNotExist):
        # A lookup that lost a race with a delete is as gone as any other.
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        # Django's request parsing limits (too many fields, bad multipart, ...).
        exc = exceptions.ParseError(str(exc) or "Malformed request.")
    elif isinstance(exc, DjangoValidationError):
        # A model field refusing a value the view let through (a malformed id
        # in a lookup, ...): the client's mistake, never a 500.
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif (unavailable := outage(exc)) is not None:
        logger.warning("request failed on an outage: %r", exc)
        exc = unavailable
    elif isinstance(exc, DatabaseError):
        # The database answered and refused the query: a bug to fix, not an
        # outage. The log keeps the details; the client gets a plain 500.
        logger.error("request failed on a database error", exc_info=exc)
        exc = ApiError(
            "server_error",
            "Internal server error.",
            status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ApiError):
        code, message, details = exc.error_code, str(exc.detail), exc.details
    elif isinstance(exc, exceptions.ValidationError):
        code, message, details = (
            "validation_error",
            _first_message(exc.detail),
            exc.detail
            if isinstance(exc.detail, dict)
            else {"non_field_errors": exc.detail},
        )
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        raw_code = detail.code if hasattr(detail, "code") else None
        code = raw_code or _STATUS_CODES.get(response.status_code, "error")
        if code in ("invalid", "error"):
            code = _STATUS_CODES.get(response.status_code, code)
        message, details = _first_message(detail), {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            details = {"retry_after_seconds": int(exc.wait)}
    if isinstance(exc, ServiceUnavailable):
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.data = error_body(code, message, details)
    _render_as_json(context.get("request"))
    return response


def _render_as_json(request: Any) -> None:
    """An error is JSON whatever the success would have been (an SSE stream, a
    file of any type); only the browsable API keeps its HTML page."""
    if request is None:
        return
    renderer = getattr(request, "accepted_renderer", None)
    if isinstance(renderer, JSONRenderer | BrowsableAPIRenderer):
        return
    request.accepted_renderer = JSONRenderer()
    request.accepted_media_type = JSONRenderer.media_type


def _json_error(status_code: int, message: str) -> JsonResponse:
    return JsonResponse(
        error_body(_STATUS_CODES.get(status_code, "error"), message), status=status_code
    )


def bad_request(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return _json_error(400, "Bad request.")


def permission_denied(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return _json_error(403, "You do not have permission to perform this action.")


def page_not_found(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse:
    return _json_error(404, "Not found.")


@csrf_exempt
def api_not_found(request: HttpRequest, unmatched: str = "") -> JsonResponse:
    """The last route under /api/: unknown API paths are JSON 404 even with DEBUG.

    Exempt from CSRF: it changes nothing, and a POST to an unknown path must
    get this 404, not Django's HTML CSRF failure page."""
    return page_not_found(request)


def server_error(request: HttpRequest) -> JsonResponse:
    # Django calls this while handling the exception, so it is still current:
    # an outage met outside DRF (middleware, plain views) is a 503 too.
    unavailable = outage(sys.exc_info()[1]) if sys.exc_info()[1] else None
    if unavailable is not None:
        response = JsonResponse(
            error_body(unavailable.detail.code, str(unavailable.detail)), status=503
        )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return _json_error(500, "Internal server error.")
