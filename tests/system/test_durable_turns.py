"""A turn whose process is killed is taken over by another process.

Two daphne processes (inline mode) on one PostgreSQL and Redis, the fake model
server and, for tool calls, an HTTP endpoint that never answers. A turn starts
on `a`, `a` is killed with SIGKILL at a known point (text streaming, a
non-idempotent call in flight, a read-only call in flight), and `b` takes the
turn over once its 5 s lease lapses: the answer completes, the session's
events stay gapless and no event or tool call is stored (or sent) twice.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest

from testing.fake_openai import FAKE_MODEL
from tests.plugins.runtime import is_partial
from tests.system.conftest import (
    assert_gapless,
    frames_until,
    is_final,
    open_ws,
    wait_for,
)

pytestmark = [
    pytest.mark.slow,
    # Two server starts plus a takeover's lease on a loaded machine.
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

LEASE_SECONDS = 5
#: A lease, a sweep period and the rest of the answer, with slack for a loaded machine.
TAKEOVER_TIMEOUT = LEASE_SECONDS + 5 + 25
INTERRUPTED = "This tool call was interrupted"


class HangingEndpoint:
    """Accepts HTTP requests, counts them and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if conn.recv(65536):
                self.requests += 1

    def charge_tool(self) -> dict:
        """An `http_endpoint` tool entry, `charge`, that calls this endpoint."""
        return {
            "tool": "http_endpoint",
            "config": {
                "name": "charge",
                "description": "Charges the card.",
                "url": f"http://127.0.0.1:{self.port}/charge",
                "timeout_seconds": 120,
            },
        }

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def stack(stack_factory):
    stack = stack_factory(
        AGENTRY_TURN_LEASE=LEASE_SECONDS, AGENTRY_ALLOW_PRIVATE_URLS=1
    )
    stack.server("a")
    stack.server("b")
    return stack


@pytest.fixture(scope="module")
def api(stack):
    """The REST client talks to `b`, which lives; turns start over `a`'s websocket."""
    return stack.user(stack.servers[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[HangingEndpoint]:
    server = HangingEndpoint()
    yield server
    server.close()


@pytest.fixture
def survivor(stack, api):
    """`a` runs the turn and is killed; `b` (supervising, after one request)
    takes it over. `a` is started again for the next test."""
    a, _b = stack.servers
    _warm(a, api)
    yield a
    if not a.running():
        a.start()


def _warm(server, api) -> None:
    """One short turn first: a fresh process's first turn imports the model
    clients, which on a loaded machine can hold its loop past the lease."""
    session = api.create_session(api.create_agent(model=FAKE_MODEL)["id"])
    ws = open_ws(server, api, session["id"])
    ws.send(json.dumps({"type": "message", "content": "[[tokens=1]] hi"}))
    frames_until(ws, is_final, timeout=60)
    ws.close()


def _kill_and_wait_for_takeover(
    a, api, session_id: str, execution_id: str, *, killed: bool = False
) -> list[dict]:
    if not killed:
        a.kill()
    execution = wait_for(
        lambda: (
            (e := api.execution(execution_id))["status"] not in ("queued", "running")
            and e
        ),
        timeout=TAKEOVER_TIMEOUT,
        what="the takeover to finish the turn",
    )
    assert execution["status"] == "succeeded", execution
    events = api.all_events(session_id)
    assert_gapless(events)
    assert all(e["execution"] == execution_id for e in events)
    taken = [e for e in events if e["kind"] == "state"]
    assert [e["metadata"] for e in taken] == [{"taken_over": 1}], taken
    return events


def stored_kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["author"], e["kind"]) for e in events]


def test_a_turn_killed_mid_answer_is_answered_by_another_process(stack, api, survivor):
    agent = api.create_agent(model=FAKE_MODEL)
    session = api.create_session(agent["id"])
    ws = open_ws(survivor, api, session["id"])
    ws.send(json.dumps({"type": "message", "content": "[[tokens=60 delay=25]] story"}))
    frames = frames_until(ws, is_partial, timeout=20)
    execution_id = next(
        f["execution"]["id"] for f in frames if f["type"] == "execution"
    )

    events = _kill_and_wait_for_takeover(survivor, api, session["id"], execution_id)
    ws.close()

    assert stored_kinds(events) == [
        ("user", "message"),
        ("system", "state"),
        ("agent", "message"),
    ]
    assert events[-1]["content"] == " ".join(f"word{i}" for i in range(60))
    assert events[-1]["turn_complete"]


def test_a_call_in_flight_that_may_have_acted_is_reported_interrupted_not_rerun(
    stack, api, survivor, endpoint
):
    agent = api.create_agent(
        model=FAKE_MODEL,
        tools=[endpoint.charge_tool()],
    )
    session = api.create_session(agent["id"])
    before = endpoint.requests
    ws = open_ws(survivor, api, session["id"])
    ws.send(json.dumps({"type": "message", "content": "[[call charge {}]] pay"}))
    wait_for(lambda: endpoint.requests > before, timeout=20, what="the call to start")

    events = _kill_and_wait_for_takeover(
        survivor, api, session["id"], _running(api, session)
    )
    ws.close()

    assert endpoint.requests == before + 1, "the charge is not sent again"
    assert stored_kinds(events) == [
        ("user", "message"),
        ("agent", "tool_call"),
        ("system", "state"),
        ("tool", "tool_result"),
        ("agent", "message"),
    ]
    result = events[3]
    assert result["metadata"]["is_error"] and result["content"].startswith(INTERRUPTED)
    # The model was told (the fake model quotes the tool's answer).
    assert INTERRUPTED in events[-1]["content"]


def test_a_read_only_call_in_flight_is_run_again(stack, api, survivor):
    agent = api.create_agent(
        model=FAKE_MODEL, tools=[{"tool": "artifacts", "config": {}}]
    )
    session = api.create_session(agent["id"])
    ws = open_ws(survivor, api, session["id"])
    # The call provably runs when `a` dies: it waits on a table this test locks.
    with psycopg.connect(stack.db.url) as lock:
        lock.execute("LOCK TABLE sessions_app_artifact IN ACCESS EXCLUSIVE MODE")
        ws.send(
            json.dumps(
                {"type": "message", "content": "[[call list_artifacts {}]] files?"}
            )
        )
        wait_for(
            lambda: any(
                e["kind"] == "tool_call" for e in api.all_events(session["id"])
            ),
            timeout=20,
            what="the call to start",
        )
        execution_id = _running(api, session)
        survivor.kill()
        lock.rollback()

    events = _kill_and_wait_for_takeover(
        survivor, api, session["id"], execution_id, killed=True
    )
    ws.close()

    assert stored_kinds(events) == [
        ("user", "message"),
        ("agent", "tool_call"),
        ("system", "state"),
        ("tool", "tool_result"),
        ("agent", "message"),
    ]
    assert not events[3]["metadata"]["is_error"], events[3]
    assert INTERRUPTED not in events[3]["content"]


def _running(api, session) -> str:
    return next(
        e["id"] for e in api.executions(session["id"]) if e["status"] == "running"
    )
