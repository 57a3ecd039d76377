"""Traces, metrics and logs of a live server (DESIGN.md section 12).

One daphne process exports its spans over OTLP/HTTP to a receiver this test
runs (`testing.otlp`), serves `/metrics` behind a token and logs JSON lines to
its log file; the turns go to the fake OpenAI-compatible model over HTTP.
"""

from __future__ import annotations

import json
import re
import secrets

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testing.fake_openai import FAKE_MODEL
from testing.otlp import OtlpReceiver, ReceivedSpan
from tests.system.conftest import frames_until, is_final, open_ws

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

METRICS_TOKEN = "metrics-" + "x" * 20
ACCESS_LOG = re.compile(r"^\S+ - - \[[^]]+\] \"")


@pytest.fixture(scope="module")
def receiver():
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def stack(receiver, stack_factory):
    # The receiver outlives the server, which sends its last spans as it stops.
    stack = stack_factory(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        # The batch processor sends within 50 ms instead of 5 s.
        OTEL_BSP_SCHEDULE_DELAY="50",
        AGENTRY_METRICS_TOKEN=METRICS_TOKEN,
        LOG_FORMAT="json",
    )
    stack.server()
    return stack


@pytest.fixture(scope="module")
def server(stack):
    return stack.servers[0]


@pytest.fixture(scope="module")
def api(stack, server):
    return stack.user(server)


@pytest.fixture
def session(api):
    agent = api.create_agent(model=FAKE_MODEL)
    return api.create_session(agent["id"])


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _turn_span(receiver: OtlpReceiver, execution_id: str) -> ReceivedSpan:
    def found(spans: list[ReceivedSpan]) -> bool:
        return any(
            s.name == "agentry.turn"
            and s.attributes.get("agentry.execution_id") == execution_id
            for s in spans
        )

    spans = receiver.wait_for(found)
    return next(
        s
        for s in spans
        if s.name == "agentry.turn"
        and s.attributes.get("agentry.execution_id") == execution_id
    )


def _descendants(receiver: OtlpReceiver, root: ReceivedSpan) -> list[ReceivedSpan]:
    def model_request_under(spans: list[ReceivedSpan]) -> bool:
        return any(_is_model_request(s) and _is_under(s, root, spans) for s in spans)

    spans = receiver.wait_for(model_request_under)
    return [s for s in spans if _is_under(s, root, spans)]


def _is_model_request(span: ReceivedSpan) -> bool:
    return span.attributes.get("gen_ai.operation.name") == "chat"


def _is_under(
    span: ReceivedSpan, root: ReceivedSpan, spans: list[ReceivedSpan]
) -> bool:
    by_id = {s.span_id: s for s in spans if s.trace_id == root.trace_id}
    current = span
    while current.trace_id == root.trace_id and current.parent_id:
        if current.parent_id == root.span_id:
            return True
        parent = by_id.get(current.parent_id)
        if parent is None:
            return False
        current = parent
    return False


def test_a_rest_turn_is_one_span_over_pydantic_ai_spans_in_the_callers_trace(
    receiver, api, session
):
    trace_id, traceparent = _traceparent()
    marker = f"secret-prompt-{secrets.token_hex(4)}"
    answer = api._ok(
        api.post(
            f"/api/sessions/{session['id']}/messages/",
            json={"content": f"[[tokens=3]] {marker}"},
            headers={"traceparent": traceparent},
        )
    )
    execution = answer["execution"]
    assert execution["trace_id"] == trace_id
    assert api.execution(execution["id"])["trace_id"] == trace_id

    turn = _turn_span(receiver, execution["id"])
    assert turn.trace_id == trace_id
    assert turn.attributes["agentry.session_id"] == session["id"]
    assert turn.attributes["agentry.agent_id"] == session["agent"]
    assert turn.attributes["agentry.agent_version"] == execution["agent_version"]
    assert turn.attributes["agentry.status"] == "succeeded"
    under = _descendants(receiver, turn)
    assert any(_is_model_request(s) for s in under)
    # The Django request span is the turn's parent, in the caller's trace. It
    # ends after the response is sent, so it may arrive after the answer.
    spans = receiver.wait_for(lambda got: any(s.span_id == turn.parent_id for s in got))
    request_span = next(s for s in spans if s.span_id == turn.parent_id)
    assert request_span.parent_id == traceparent.split("-")[2]
    # The database instrumentation traces the turn's queries.
    same_trace = [s for s in receiver.spans() if s.trace_id == trace_id]
    assert any(
        "postgresql"
        in (s.attributes.get("db.system"), s.attributes.get("db.system.name"))
        for s in same_trace
    )
    # Prompt and answer text stay out of the spans by default.
    everything = json.dumps([s.attributes for s in receiver.spans()])
    assert marker not in everything


def test_a_message_frame_traceparent_continues_the_callers_trace(
    receiver, server, api, session
):
    trace_id, traceparent = _traceparent()
    with open_ws(server, api, session["id"]) as ws:
        ws.send(
            json.dumps(
                {
                    "type": "message",
                    "content": "[[tokens=2]] hello",
                    "traceparent": traceparent,
                }
            )
        )
        frames = frames_until(ws, is_final)
    execution = frames[-1]["execution"]
    assert execution["status"] == "succeeded"
    assert execution["trace_id"] == trace_id
    turn = _turn_span(receiver, execution["id"])
    assert (turn.trace_id, turn.parent_id) == (trace_id, traceparent.split("-")[2])


def _metrics(server, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10)


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_turns_behind_the_token(server, api, session):
    assert _metrics(server, None).status_code == 401
    assert _metrics(server, "wrong").status_code == 401
    before = _samples(_metrics(server, METRICS_TOKEN).text)
    api.send_message(session["id"], "[[tokens=4]] count me")
    response = _metrics(server, METRICS_TOKEN)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    succeeded = ("agentry_turns_total", (("status", "succeeded"),))
    assert after[succeeded] == before.get(succeeded, 0) + 1
    assert after[("agentry_turn_seconds_count", ())] >= 1
    assert after[("agentry_first_token_seconds_count", ())] >= 1
    output = ("agentry_tokens_total", (("kind", "output"),))
    assert after[output] >= before.get(output, 0) + 4
    assert after[("agentry_active_turns", ())] == 0
    assert ("process_resident_memory_bytes", ()) in after


def test_json_log_lines_carry_the_ids_and_request_ids_round_trip(server, api, session):
    answer = api._ok(
        api.post(
            f"/api/sessions/{session['id']}/messages/",
            json={"content": "[[tokens=2]] log me"},
            headers={"X-Request-ID": "req-abc.123"},
        )
    )
    execution = answer["execution"]
    health = httpx.get(f"{server.url}/health/", headers={"X-Request-ID": "mine-1"})
    assert health.headers["x-request-id"] == "mine-1"
    made = httpx.get(f"{server.url}/health/").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    # A value that could forge log lines is replaced.
    forged = httpx.get(f"{server.url}/health/", headers={"X-Request-ID": "a b\\n"})
    assert forged.headers["x-request-id"] != "a b\\n"

    def finished_line() -> dict | None:
        for line in server.log_tail(400).splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            if (
                record.get("message") == "turn finished"
                and record.get("execution_id") == execution["id"]
            ):
                return record
        return None

    record = finished_line()
    assert record is not None, server.log_tail(40)
    assert {"time", "level", "logger"} <= record.keys()
    assert record["level"] == "INFO"
    assert record["status"] == "succeeded"
    assert record["session_id"] == session["id"]
    assert record["request_id"] == "req-abc.123"
    assert record["trace_id"] == execution["trace_id"]
    assert record["user_id"] == execution["user"]
    assert record["tokens"] >= 2
    assert isinstance(record["duration_ms"], int)
    # Every line the server logs is one JSON object; daphne's access log is its
    # own stream in its own format (docs/observability.md), and the migration
    # output before the server started is not the server's.
    lines = server.log_tail(400).splitlines()
    started = next(i for i, x in enumerate(lines) if "Starting server" in x)
    assert lines[started].startswith("{")
    logged = [x for x in lines[started:] if x.strip() and not ACCESS_LOG.match(x)]
    assert all(isinstance(json.loads(x), dict) for x in logged)
