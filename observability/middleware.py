"""Request ids, the caller's trace and the websocket gauge, for every connection.

Public surface:
    RequestContextMiddleware(app)   ASGI middleware around the whole application:
                                    keeps (or makes) the X-Request-ID of each HTTP
                                    request and websocket connection, returns it on
                                    HTTP responses, continues a `traceparent`
                                    header's trace, counts open websockets and
                                    answers `/metrics` (observability.views)
    request_user_middleware         Django middleware that lets log lines name the
                                    authenticated user of the request
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from opentelemetry import context as otel_context

from observability import metrics, tracing
from observability.logs import REQUEST, REQUEST_ID, new_request_id
from observability.views import serve_metrics

_REQUEST_ID_HEADER = b"x-request-id"


class RequestContextMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.inner(scope, receive, send)
        headers = scope.get("headers") or ()
        incoming = None
        has_traceparent = False
        for name, value in headers:
            if name == _REQUEST_ID_HEADER:
                incoming = value.decode("latin-1")
            elif name == b"traceparent":
                has_traceparent = True
        request_id = new_request_id(incoming)
        REQUEST_ID.set(request_id)
        # With tracing on, Django's instrumentation reads the header too; this
        # also makes a turn started by the request keep the caller's trace id
        # when this process exports nothing.
        if has_traceparent:
            parent = tracing.parent_context_from_headers(headers)
            if parent is not None:
                otel_context.attach(parent)
        if kind == "http":
            send = _with_request_id(send, request_id)
            if scope["path"] == "/metrics":
                return await serve_metrics(scope, receive, send)
            return await self.inner(scope, receive, send)
        return await _counting_websocket(self.inner, scope, receive, send)


def _with_request_id(send: Any, request_id: str) -> Callable[[Any], Awaitable[None]]:
    header = (_REQUEST_ID_HEADER, request_id.encode("latin-1"))

    async def send_with_id(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {
                **message,
                "headers": [
                    *(
                        h
                        for h in message.get("headers", ())
                        if h[0].lower() != _REQUEST_ID_HEADER
                    ),
                    header,
                ],
            }
        await send(message)

    return send_with_id


async def _counting_websocket(inner: Any, scope: Any, receive: Any, send: Any) -> Any:
    accepted = False

    async def send_counting(message: Any) -> None:
        nonlocal accepted
        await send(message)
        if message["type"] == "websocket.accept" and not accepted:
            accepted = True
            metrics.OPEN_WEBSOCKETS.inc()

    try:
        return await inner(scope, receive, send_counting)
    finally:
        if accepted:
            metrics.OPEN_WEBSOCKETS.dec()


def request_user_middleware(get_response: Any) -> Any:
    """Keeps the request where the log filter finds its user once known."""
    if iscoroutinefunction(get_response):

        async def middleware(request: Any) -> Any:
            token = REQUEST.set(request)
            try:
                return await get_response(request)
            finally:
                REQUEST.reset(token)

        markcoroutinefunction(middleware)
    else:

        def middleware(request: Any) -> Any:  # type: ignore[misc]
            # Reset afterwards: a thread serving requests one after another
            # (WSGI, the test client) must not log the last request's user.
            token = REQUEST.set(request)
            try:
                return get_response(request)
            finally:
                REQUEST.reset(token)

    return middleware


request_user_middleware.sync_capable = True  # type: ignore[attr-defined]
request_user_middleware.async_capable = True  # type: ignore[attr-defined]
