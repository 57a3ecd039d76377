"""What the server does when the world around it breaks.

One daphne process on a fresh PostgreSQL database, a private redis-server and
the fake model server (`testing.live`). The lease is 3 s and the model timeout
2 s so recovery fits in seconds. Each test leaves the server healthy for the
next; the tests that stop or kill the server restart it.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from typing import Any

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from testing.fake_openai import FAKE_MODEL
from tests.plugins.runtime import is_partial
from tests.system.conftest import (
    assert_gapless,
    frames_until,
    is_final,
    open_ws,
    recv_frame,
    wait_for,
)

pytestmark = [
    pytest.mark.slow,
    # Sockets that outlive one block are closed by hand.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

LEASE_SECONDS = 3
MODEL_TIMEOUT_SECONDS = 2
LONG_ANSWER = "[[tokens=400 delay=40]] tell me a long story"


@pytest.fixture(scope="module")
def stack(stack_factory):
    stack = stack_factory(
        AGENTRY_TURN_LEASE=LEASE_SECONDS,
        # No takeovers: a turn whose process died ends `interrupted` (the
        # takeovers themselves are tests/system/test_durable_turns.py's).
        AGENTRY_TURN_MAX_ATTEMPTS=0,
        AGENTRY_MODEL_TIMEOUT=MODEL_TIMEOUT_SECONDS,
        DATABASE_POOL_MIN=2,
        DATABASE_POOL_MAX=8,
    )
    stack.server()
    return stack


@pytest.fixture(scope="module")
def server(stack):
    return stack.servers[0]


@pytest.fixture(scope="module")
def api(stack, server):
    return stack.user(server)


@pytest.fixture(scope="module")
def agent(api):
    return api.create_agent(model=FAKE_MODEL)


@pytest.fixture
def session(api, agent):
    return api.create_session(agent["id"])


def _assert_healthy(server, api, session_id: str) -> None:
    assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
    answer = api.send_message(session_id, "[[tokens=3]] are you there?")
    assert answer["execution"]["status"] == "succeeded", answer["execution"]
    assert answer["events"][-1]["content"] == "word0 word1 word2"


def _start_long_turn(server, api, session_id: str):
    """Opens a websocket, starts a long answer and waits for its first streamed text."""
    ws = open_ws(server, api, session_id)
    ws.send(json.dumps({"type": "message", "content": LONG_ANSWER}))
    frames = frames_until(ws, is_partial, timeout=20)
    execution = next(f["execution"] for f in frames if f["type"] == "execution")
    return ws, execution["id"]


def _assert_interrupted(api, session_id: str, execution_id: str) -> list[dict]:
    execution = api.execution(execution_id)
    assert execution["status"] == "interrupted", execution
    assert execution["error_code"] == "interrupted"
    events = api.all_events(session_id)
    assert_gapless(events)
    assert events[0]["author"] == "user"
    assert events[0]["content"] == LONG_ANSWER
    assert events[-1]["kind"] == "error"
    assert events[-1]["error_code"] == "interrupted"
    assert all(e["execution"] == execution_id for e in events)
    return events


@pytest.mark.parametrize(
    ("directive", "error_code"),
    [
        ("[[error=500]]", "model_error"),
        ("[[error=429]]", "model_rate_limited"),
        ("[[hang]]", "model_timeout"),
        ("[[tokens=50 delay=5 disconnect_after=4]]", "model_error"),
    ],
    ids=["500", "429", "hang", "dropped-stream"],
)
def test_model_failure_ends_the_turn_with_an_error_and_the_server_stays_healthy(
    server, api, session, directive, error_code
):
    started = time.monotonic()
    answer = api.send_message(session["id"], f"{directive} hello")
    elapsed = time.monotonic() - started

    execution, events = answer["execution"], answer["events"]
    assert execution["status"] == "failed"
    assert execution["error_code"] == error_code
    assert events[0]["author"] == "user"
    assert events[-1]["kind"] == "error"
    assert events[-1]["error_code"] == error_code
    # Within the model timeout (plus the time to store and answer).
    assert elapsed < MODEL_TIMEOUT_SECONDS + 3, elapsed
    _assert_healthy(server, api, session["id"])
    assert_gapless(api.all_events(session["id"]))


def test_killed_database_connections_fail_only_in_flight_requests_as_json_503(
    stack, server, api, session
):
    api.send_message(session["id"], "[[tokens=2]] warm up")
    paths = [
        "/api/sessions/",
        f"/api/sessions/{session['id']}/events/",
        "/api/auth/me",
        "/api/agents/",
    ]
    database = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(database, autocommit=True) as admin:
        # Kill every idle pooled connection first: the pool must notice on its
        # own, so none of these requests may fail.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (stack.db.name,),
        )
    for path in paths:
        assert api.get(path).status_code == 200, path

    # Hold a lock on the sessions table so that listing requests are provably
    # in flight on their backends, then kill exactly those backends.
    in_flight = 3
    with (
        psycopg.connect(stack.db.url) as locker,
        concurrent.futures.ThreadPoolExecutor(in_flight) as pool,
        psycopg.connect(database, autocommit=True) as admin,
    ):
        locker.execute("LOCK TABLE sessions_app_session IN ACCESS EXCLUSIVE MODE")
        futures = [
            pool.submit(
                httpx.get,
                f"{server.url}/api/sessions/",
                headers=api.headers,
                timeout=20,
            )
            for _ in range(in_flight)
        ]
        waiting = wait_for(
            lambda: _backends_waiting_for_a_lock(admin, stack.db.name, in_flight),
            timeout=15,
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (waiting,)
        )
        locker.rollback()
        responses = [f.result() for f in futures]

    for response in responses:
        assert response.status_code == 503, (response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "database_unavailable"
    # The next requests get fresh connections.
    for path in paths:
        assert api.get(path).status_code == 200
    _assert_healthy(server, api, session["id"])


def _backends_waiting_for_a_lock(admin, database: str, count: int) -> list[int] | None:
    pids = [
        pid
        for (pid,) in admin.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = %s AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    ]
    return pids if len(pids) >= count else None


def test_redis_outage_keeps_rest_working_and_websockets_recover_by_resume(
    stack, server, api, agent, session
):
    ws = open_ws(server, api, session["id"])
    ws.send('{"type": "message", "content": "[[tokens=3]] before the outage"}')
    frames_until(ws, is_final)

    stack.redis.stop()
    stopped = time.monotonic()
    # The socket is told, not left hanging.
    frame = recv_frame(ws, timeout=10)
    detected = time.monotonic() - stopped
    assert frame == {
        "type": "error",
        "error": {"code": "stream_unavailable", "message": frame["error"]["message"]},
    }
    with pytest.raises(ConnectionClosed) as closed:
        recv_frame(ws, timeout=5)
    assert closed.value.rcvd.code == 4503

    # REST works without Redis: login, lists, events, and even a turn.
    relogin = httpx.post(
        f"{server.url}/api/auth/login",
        json={"username": api.username, "password": "Sturdy-passw0rd!"},
        timeout=10,
    )
    assert relogin.status_code == 200
    assert api.get("/api/sessions/").status_code == 200
    answer = api.send_message(session["id"], "[[tokens=4]] during the outage")
    assert answer["execution"]["status"] == "succeeded"

    # A websocket opened during the outage is told why it cannot stream.
    with open_ws(server, api, session["id"]) as refused:
        assert recv_frame(refused)["error"]["code"] == "stream_unavailable"
        with pytest.raises(ConnectionClosed) as closed:
            recv_frame(refused, timeout=5)
        assert closed.value.rcvd.code == 4503
    # SSE needs the channel layer too: a clear 503, nothing stored.
    sse = api.post(
        f"/api/sessions/{session['id']}/messages/?stream=true",
        json={"content": "[[tokens=2]] streamed during the outage"},
    )
    assert sse.status_code == 503
    assert sse.json()["error"]["code"] == "stream_unavailable"

    stored = api.all_events(session["id"])
    assert_gapless(stored)
    assert [e["content"] for e in stored if e["author"] == "user"] == [
        "[[tokens=3]] before the outage",
        "[[tokens=4]] during the outage",
    ]

    stack.redis.start()

    # Once Redis is back, a new socket and `resume` recover everything missed.
    def reconnect() -> Any:
        try:
            return open_ws(server, api, session["id"])
        except Exception:
            return None

    ws = wait_for(reconnect, timeout=15, what="a websocket after Redis came back")
    with ws:
        ws.send('{"type": "resume", "after_sequence": 2}')
        replayed = [recv_frame(ws)["event"] for _ in range(len(stored) - 2)]
        assert replayed == stored[2:]
        ws.send('{"type": "message", "content": "[[tokens=2]] after the outage"}')
        frames = frames_until(ws, is_final)
        assert frames[-1]["execution"]["status"] == "succeeded"
    print(f"redis outage detected by the websocket in {detected:.2f}s")


def test_sigterm_ends_running_turns_interrupted_with_their_events(server, api, session):
    ws, execution_id = _start_long_turn(server, api, session["id"])
    started = time.monotonic()
    assert server.stop(timeout=30) is not None
    stop_seconds = time.monotonic() - started
    ws.close()
    assert server.proc.returncode in (0, -signal.SIGTERM), server.log_tail()

    server.start()
    events = _assert_interrupted(api, session["id"], execution_id)
    # Ended by the process itself, not swept later: the text streamed so far is kept.
    assert any(
        e["author"] == "agent" and e["metadata"].get("incomplete") for e in events
    ), events
    _assert_healthy(server, api, session["id"])
    print(f"SIGTERM to exit: {stop_seconds:.2f}s")


def test_kill_9_mid_turn_out_of_takeovers_is_swept_interrupted_after_restart(
    server, api, session
):
    ws, execution_id = _start_long_turn(server, api, session["id"])
    killed = time.monotonic()
    server.kill()
    ws.close()
    assert api_unreachable(server)

    server.start()
    restarted = time.monotonic()

    def interrupted() -> bool:
        return api.execution(execution_id)["status"] == "interrupted"

    # A lease plus a sweep period, plus slack for a loaded machine.
    wait_for(interrupted, timeout=LEASE_SECONDS + 5 + 10, what="the sweep")
    recovered = time.monotonic()
    events = _assert_interrupted(api, session["id"], execution_id)
    assert [e["kind"] for e in events] == ["message", "error"]
    _assert_healthy(server, api, session["id"])
    print(
        f"kill -9: restart {restarted - killed:.2f}s, "
        f"interrupted {recovered - killed:.2f}s after the kill"
    )


def api_unreachable(server) -> bool:
    try:
        httpx.get(f"{server.url}/health", timeout=2)
    except httpx.HTTPError:
        return True
    return False
