"""Request bodies reach Django untouched when daphne serves the app.

Twisted, under daphne, parses every multipart/form-data POST body itself
before the application sees it, only to fill `request.args`, which daphne
never reads. A body it cannot parse (an empty multipart, `--boundary--` alone,
a non-ASCII field name) is answered with a bare 400, no content type and no
body, and the connection closed, so the API's error body never gets written.
It also holds a second in-memory copy of every upload. Django parses the body
anyway and answers what it refuses with the API's JSON errors.
"""

from __future__ import annotations

import inspect


def serve_request_bodies_to_the_app() -> None:
    """Has daphne's HTTP requests skip Twisted's own form parsing."""
    try:
        from daphne import http_protocol
        from twisted.web import http
    except ImportError:  # served by another ASGI server
        return
    base = http_protocol.WebRequest
    if getattr(base, "parses_forms", True) is False:
        return
    if "parsePOSTFormSubmission" not in inspect.signature(http.Request).parameters:
        return

    class WebRequest(base):
        parses_forms = False

        def __init__(self, *args, **kwargs) -> None:
            kwargs["parsePOSTFormSubmission"] = False
            super().__init__(*args, **kwargs)

    # `HTTPFactory.buildProtocol` looks the request class up here per connection.
    http_protocol.WebRequest = WebRequest
