"""`/metrics` access, the JSON log format and X-Request-ID, in-process.

The live-server tests (tests/system/test_observability.py) cover traces and
metrics of real turns; these cover the edges cheaply.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from channels.testing import HttpCommunicator

from config.asgi import application
from observability.logs import (
    EXECUTION_ID,
    REQUEST_ID,
    SESSION_ID,
    ContextFilter,
    JsonFormatter,
)


async def _call(
    method: str, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    communicator = HttpCommunicator(application, method, path, headers=headers)
    response = await communicator.get_response()
    return response["status"], dict(response["headers"]), response["body"]


def _bearer(value: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", value.encode())]


async def test_metrics_are_off_without_a_token(settings):
    settings.AGENTRY_METRICS_TOKEN = ""
    status, _, body = await _call("GET", "/metrics", _bearer("Bearer anything"))
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"


@pytest.mark.parametrize("header", ["", "Bearer wrong", "Basic s3cret-token", "Bearer"])
async def test_metrics_want_the_bearer_token(settings, header):
    settings.AGENTRY_METRICS_TOKEN = "s3cret-token"
    status, headers, body = await _call(
        "GET", "/metrics", _bearer(header) if header else []
    )
    assert status == 401
    assert headers[b"www-authenticate"].startswith(b"Bearer")
    assert json.loads(body)["error"]["code"] == "not_authenticated"


async def test_metrics_with_the_token_are_prometheus_text_for_any_host(settings):
    settings.AGENTRY_METRICS_TOKEN = "s3cret-token"
    # A scraper names the process by its address, which ALLOWED_HOSTS lacks.
    status, headers, body = await _call(
        "GET",
        "/metrics",
        [*_bearer("Bearer s3cret-token"), (b"host", b"10.1.2.3:8000")],
    )
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain")
    text = body.decode()
    for name in (
        "agentry_turns_total",
        "agentry_turn_seconds",
        "agentry_first_token_seconds",
        "agentry_tokens_total",
        "agentry_cost_usd_total",
        "agentry_active_turns",
        "agentry_queued_turns",
        "agentry_open_websockets",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text
    status, _, _ = await _call("POST", "/metrics", _bearer("Bearer s3cret-token"))
    assert status == 405


def _json_line(message: str, **extra: object) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    logger = logging.getLogger("agentry.test-json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(message, extra=extra)
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    return json.loads(line)


def test_json_lines_carry_the_ids_of_their_context():
    tokens = [
        (REQUEST_ID, REQUEST_ID.set("req-1")),
        (SESSION_ID, SESSION_ID.set("s-1")),
        (EXECUTION_ID, EXECUTION_ID.set("e-1")),
    ]
    try:
        record = _json_line("hello %s", status="ok")
    finally:
        for var, token in tokens:
            var.reset(token)
    assert record["message"] == "hello %s"
    assert record["level"] == "WARNING"
    assert record["logger"] == "agentry.test-json"
    assert record["time"].endswith("+00:00")
    assert (record["request_id"], record["session_id"], record["execution_id"]) == (
        "req-1",
        "s-1",
        "e-1",
    )
    assert record["status"] == "ok"
    assert "trace_id" not in record


def test_json_lines_without_context_name_no_ids():
    record = _json_line("plain")
    assert not {"request_id", "session_id", "execution_id", "user_id"} & set(record)


async def _get(headers: list[tuple[bytes, bytes]]) -> dict:
    communicator = HttpCommunicator(application, "GET", "/health/", headers=headers)
    response = await communicator.get_response()
    return dict(response["headers"])


@pytest.mark.django_db(transaction=True)
async def test_a_request_id_is_kept_or_made_and_returned():
    kept = await _get([(b"x-request-id", b"proxy-42")])
    assert kept[b"x-request-id"] == b"proxy-42"
    made = (await _get([]))[b"x-request-id"]
    assert len(made) == 32 and int(made, 16) >= 0
    replaced = await _get([(b"x-request-id", b"x" * 300)])
    assert replaced[b"x-request-id"] != b"x" * 300
