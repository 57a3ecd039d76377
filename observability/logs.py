"""Structured logs: the ids a line is about, and the JSON line format.

Public surface:
    REQUEST_ID, REQUEST, USER_ID, SESSION_ID, EXECUTION_ID, TRACE_ID
                        context variables the request middleware and the turn
                        runner set; every log line emitted meanwhile carries them
    ContextFilter       logging filter adding those ids (and the current span's
                        trace id) to each record
    JsonFormatter       one JSON object per line: time, level, logger, message,
                        the ids known, and whatever `extra=` a call passed
    new_request_id(incoming)
                        the caller's X-Request-ID when it is a sane token, else a new one

`LOG_FORMAT=json` selects JsonFormatter in config/settings.py LOGGING; the
filter runs on the console handler in both formats.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any

from django.utils.functional import SimpleLazyObject, empty
from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentry_request_id", default=None
)
#: The Django request being served, to read its user once it is authenticated.
REQUEST: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "agentry_request", default=None
)
USER_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentry_user_id", default=None
)
SESSION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentry_session_id", default=None
)
EXECUTION_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentry_execution_id", default=None
)
TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "agentry_trace_id", default=None
)

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def new_request_id(incoming: str | None) -> str:
    """Keeps a proxy's or client's request id, unless it could forge log lines."""
    if incoming and _SANE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def _request_user_id() -> str | None:
    request = REQUEST.get()
    if request is None:
        return None
    # Only a user already known (Django's session user once resolved, or the
    # one DRF authenticated): resolving the lazy user here would query the
    # database from inside a log call, and from async code.
    user = request.__dict__.get("_cached_user") or request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = None if user._wrapped is empty else user._wrapped
    pk = getattr(user, "pk", None)
    return str(pk) if pk is not None else None


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (
            ("request_id", REQUEST_ID),
            ("session_id", SESSION_ID),
            ("execution_id", EXECUTION_ID),
        ):
            value = var.get()
            if value is not None and not hasattr(record, name):
                record.__dict__[name] = value
        if not hasattr(record, "user_id"):
            user_id = USER_ID.get() or _request_user_id()
            if user_id is not None:
                record.user_id = user_id
        if not hasattr(record, "trace_id"):
            span_context = trace.get_current_span().get_span_context()
            if span_context.is_valid:
                record.trace_id = format(span_context.trace_id, "032x")
            elif (trace_id := TRACE_ID.get()) is not None:
                record.trace_id = trace_id
        return True


class JsonFormatter(_BaseJsonFormatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        super().__init__(*args, **kwargs)
