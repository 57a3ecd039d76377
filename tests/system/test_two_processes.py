"""Horizontal scaling: two daphne processes sharing PostgreSQL and Redis.

A turn runs in the process that received its message; every websocket of
the session, on either process, gets its frames through the channel-layer
group `session_<id>`, and a cancel sent to either process reaches the turn
through `session_<id>.control`.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest

from testing.fake_openai import FAKE_MODEL
from tests.plugins.runtime import is_partial
from tests.system.conftest import (
    assert_gapless,
    frames_until,
    is_final,
    open_ws,
)

pytestmark = pytest.mark.slow

LONG_ANSWER = "[[tokens=400 delay=40]] a long answer"


@pytest.fixture(scope="module")
def stack(stack_factory):
    stack = stack_factory()
    stack.server("daphne-a")
    stack.server("daphne-b")
    return stack


@pytest.fixture(scope="module")
def servers(stack):
    return stack.servers


@pytest.fixture(scope="module")
def api(stack, servers):
    """One user; its token works on both processes (same keys, same database)."""
    return stack.user(servers[0])


@pytest.fixture
def session(api):
    agent = api.create_agent(model=FAKE_MODEL)
    return api.create_session(agent["id"])


def _on(server, api) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=api.headers, timeout=60)


def _sse_turn(server, api, session_id: str, content: str) -> list[dict]:
    """Runs a turn over SSE on `server`; the frames it streamed."""
    frames = []
    with (
        _on(server, api) as client,
        client.stream(
            "POST",
            f"/api/sessions/{session_id}/messages/?stream=true",
            json={"content": content},
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[len("data: ") :]))
    return frames


def _blocking_turn(server, api, session_id: str, content: str) -> dict:
    with _on(server, api) as client:
        response = client.post(
            f"/api/sessions/{session_id}/messages/", json={"content": content}
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_turn_started_on_one_process_streams_to_a_websocket_on_the_other(
    servers, api, session
):
    a, b = servers
    with (
        open_ws(b, api, session["id"]) as ws,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        sse = pool.submit(
            _sse_turn, a, api, session["id"], "[[tokens=20 delay=10]] hello"
        )
        ws_frames = frames_until(ws, is_final, timeout=30)
        sse_frames = sse.result(timeout=30)

    assert ws_frames == sse_frames
    kinds = [f["type"] for f in ws_frames]
    assert kinds[0] == "event" and ws_frames[0]["event"]["author"] == "user"
    assert ws_frames[-1]["execution"]["status"] == "succeeded"
    partial = "".join(f["event"]["content"] for f in ws_frames if is_partial(f))
    final = next(
        f["event"]
        for f in ws_frames
        if f["type"] == "event" and f["event"]["turn_complete"]
    )
    assert partial == final["content"] == " ".join(f"word{i}" for i in range(20))
    stored = api.all_events(session["id"])
    assert_gapless(stored)
    assert [
        f["event"]
        for f in ws_frames
        if f["type"] == "event" and not f["event"]["partial"]
    ] == stored


def _cancel_across_processes(servers, api, session, cancel) -> tuple[dict, float]:
    """Starts a long turn over REST on A, cancels it through `cancel(b, ws)`."""
    a, b = servers
    with (
        open_ws(b, api, session["id"]) as ws,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        turn = pool.submit(_blocking_turn, a, api, session["id"], LONG_ANSWER)
        frames_until(ws, is_partial)
        asked = time.monotonic()
        cancel(b, ws)
        frames = frames_until(ws, is_final, timeout=15)
        stopped = time.monotonic() - asked
        answer = turn.result(timeout=15)
    assert frames[-1]["execution"]["status"] == "cancelled"
    assert answer["execution"]["status"] == "cancelled"
    assert answer["events"][-1]["error_code"] == "cancelled"
    assert_gapless(api.all_events(session["id"]))
    # Far sooner than the 16 s the answer would have taken.
    assert stopped < 5, stopped
    return answer, stopped


def test_rest_cancel_on_the_other_process_stops_the_turn(servers, api, session):
    def cancel(b, ws):
        with _on(b, api) as client:
            response = client.post(f"/api/sessions/{session['id']}/cancel/")
        assert response.status_code == 202
        assert response.json() == {"cancelled": True}

    _, stopped = _cancel_across_processes(servers, api, session, cancel)
    print(f"REST cancel across processes took effect in {stopped:.2f}s")


def test_websocket_cancel_on_the_other_process_stops_the_turn(servers, api, session):
    def cancel(b, ws):
        ws.send(json.dumps({"type": "cancel"}))

    _, stopped = _cancel_across_processes(servers, api, session, cancel)
    print(f"websocket cancel across processes took effect in {stopped:.2f}s")
    # The session is free for the next turn, on either process.
    for server in servers:
        answer = _blocking_turn(server, api, session["id"], "[[tokens=2]] next")
        assert answer["execution"]["status"] == "succeeded"
