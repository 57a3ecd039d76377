"""A caller's `traceparent`: checked with the message, continued by the turn task."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry import trace

from observability.tracing import trace_id_of
from observability.turns import task_context
from sessions_app.services import TurnRejected
from sessions_app.turn_request import MAX_TRACEPARENT, TurnRequest

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _request(traceparent: object) -> TurnRequest:
    return TurnRequest.from_message(
        {"content": "hi", "traceparent": traceparent},
        session_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
    )


@pytest.mark.parametrize("bad", [5, ["x"], {"a": 1}, "0" * (MAX_TRACEPARENT + 1)])
def test_a_traceparent_that_is_no_short_string_is_refused(bad):
    with pytest.raises(TurnRejected) as refused:
        _request(bad)
    assert refused.value.code == "invalid_frame"


def test_the_turn_task_starts_in_the_callers_trace():
    context = task_context(_request(TRACEPARENT).traceparent)
    assert context is not None
    assert context.run(lambda: trace_id_of(trace.get_current_span())) == TRACE_ID


@pytest.mark.parametrize(
    "ignored",
    [
        "",
        "garbage",
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-00f067aa0ba902b7-01",
    ],
)
def test_a_malformed_traceparent_is_ignored_as_w3c_says(ignored):
    assert task_context(_request(ignored).traceparent) is None
