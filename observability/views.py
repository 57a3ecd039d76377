"""`GET /metrics`: the Prometheus text exposition, for a scraper holding the token.

Public surface:
    metrics_response(method, authorization)
                            (status, headers, body): 404 unless
                            AGENTRY_METRICS_TOKEN is set; then 401 without
                            `Authorization: Bearer <token>`; 405 for other methods
    serve_metrics(scope, receive, send)
                            the same as an ASGI application

It is answered by the ASGI middleware in front of Django, not by a URL route:
Prometheus scrapes each process by its address (`10.0.0.7:8000`), which is no
host in ALLOWED_HOSTS, and over plain HTTP, which the HTTPS redirect would
turn away; the bearer token is what protects it.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from django.conf import settings

from core.errors import error_body
from observability.metrics import exposition

_JSON = [(b"content-type", b"application/json")]


def _error(status: int, code: str, message: str) -> tuple[int, list, bytes]:
    return status, list(_JSON), json.dumps(error_body(code, message)).encode()


def metrics_response(method: str, authorization: str) -> tuple[int, list, bytes]:
    token = settings.AGENTRY_METRICS_TOKEN
    if not token:
        return _error(404, "not_found", "Metrics are off.")
    if method not in ("GET", "HEAD"):
        status, headers, body = _error(
            405, "method_not_allowed", "Only GET is allowed."
        )
        return status, [*headers, (b"allow", b"GET, HEAD")], body
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        status, headers, body = _error(
            401,
            "not_authenticated",
            "Send Authorization: Bearer <AGENTRY_METRICS_TOKEN>.",
        )
        return (
            status,
            [*headers, (b"www-authenticate", b'Bearer realm="metrics"')],
            body,
        )
    body, content_type = exposition()
    return 200, [(b"content-type", content_type.encode())], body


async def serve_metrics(scope: Any, receive: Any, send: Any) -> None:
    authorization = ""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            authorization = value.decode("latin-1")
    status, headers, body = metrics_response(scope["method"], authorization)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"" if scope["method"] == "HEAD" else body,
        }
    )
