"""A turn whose worker is killed is finished by another worker.

One stack in `task` mode per task backend (database, RQ): a daphne web
process that accepts, streams and stores, and `manage.py worker` processes
that run the turns, on PostgreSQL and Redis with a 5 s lease. A turn starts on worker `a`, `a` is killed with
SIGKILL at a known point (text streaming, a non-idempotent call in flight),
worker `b` is started and takes the turn over once the lease lapses: the
client on the web process's websocket sees the turn end, the session's events
stay gapless, nothing is stored or sent twice, and the queue row `a` had
claimed ends (failed, as orphaned) instead of staying running.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from testing.fake_openai import FAKE_MODEL
from testing.workers import LiveWorker
from tests.plugins.runtime import is_partial
from tests.system.conftest import (
    assert_gapless,
    frames_until,
    is_final,
    open_ws,
    wait_for,
)
from tests.system.test_durable_turns import INTERRUPTED, HangingEndpoint, stored_kinds

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

LEASE_SECONDS = 5
#: A worker start, a lease, a sweep period and the rest of the answer, with slack.
TAKEOVER_TIMEOUT = LEASE_SECONDS + 5 + 60


@pytest.fixture(scope="module")
def stack(stack_factory, task_backend):
    stack = stack_factory(
        AGENTRY_TURN_EXECUTION="task",
        AGENTRY_TASK_BACKEND=task_backend,
        AGENTRY_TURN_LEASE=LEASE_SECONDS,
        AGENTRY_ALLOW_PRIVATE_URLS=1,
    )
    stack.web = stack.server("web")
    stack.workers = []
    yield stack
    for worker in stack.workers:
        worker.stop(timeout=10)


@pytest.fixture(scope="module")
def api(stack):
    return stack.user(stack.web)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[HangingEndpoint]:
    server = HangingEndpoint()
    yield server
    server.close()


@pytest.fixture
def workers(stack, api) -> Iterator[tuple[LiveWorker, LiveWorker]]:
    """Worker `a` alone (warmed by one short turn, so the turn under test is
    not its first), and worker `b`, not yet started."""
    n = len(stack.workers)
    a = LiveWorker(stack.env, stack.logs, name=f"worker-a{n}").start()
    b = LiveWorker(stack.env, stack.logs, name=f"worker-b{n}")
    stack.workers += [a, b]
    session = api.create_session(api.create_agent(model=FAKE_MODEL)["id"])
    with open_ws(stack.web, api, session["id"]) as ws:
        ws.send(json.dumps({"type": "message", "content": "[[tokens=1]] hi"}))
        frames_until(ws, is_final, timeout=60)
    yield a, b
    a.stop(timeout=10)
    b.stop(timeout=10)


def _take_over(
    stack, api, ws, workers, session_id: str, execution_id: str
) -> list[dict]:
    """Kills `a`, starts `b`; the socket sees the turn succeed; returns the events."""
    a, b = workers
    a.kill()
    b.start()
    frames = frames_until(
        ws, lambda f: is_final(f, execution_id), timeout=TAKEOVER_TIMEOUT
    )
    assert frames[-1]["execution"]["status"] == "succeeded", frames[-1]
    events = api.all_events(session_id)
    assert_gapless(events)
    assert all(e["execution"] == execution_id for e in events)
    taken = [e for e in events if e["kind"] == "state"]
    assert [e["metadata"] for e in taken] == [{"taken_over": 1}], taken
    [(attempts,)] = stack.db.execute(
        "SELECT attempts FROM sessions_app_agentexecution WHERE id::text = %s",
        execution_id,
    )
    assert attempts == 1
    _assert_task_of_the_killed_worker_ended(stack, execution_id)
    return events


def _assert_task_of_the_killed_worker_ended(stack, execution_id: str) -> None:
    """The queue row `a` claimed does not stay RUNNING once `b` took its turn over.

    Database backend only: on RQ the dead worker's job is failed by RQ's own
    registry maintenance, on its own (minutes-long) schedule."""
    if stack.env.get("AGENTRY_TASK_BACKEND", "database") != "database":
        return

    def ended() -> list[tuple]:
        rows = stack.db.execute(
            "SELECT status, exception_class_path, traceback "
            "FROM django_tasks_database_dbtaskresult "
            "WHERE task_path = 'automation.tasks.run_turn' "
            "AND args_kwargs->'args'->>0 = %s",
            execution_id,
        )
        return rows if rows and all(row[0] != "RUNNING" for row in rows) else []

    [(status, exception, reason)] = wait_for(
        ended, timeout=TAKEOVER_TIMEOUT, what="the killed worker's task row to end"
    )
    assert (status, exception) == ("FAILED", "automation.orphans.TaskOrphaned")
    # Whichever `b` saw first: the dead worker's lapsed lease, or the takeover.
    assert "worker stopped" in reason or "taken over" in reason, reason


def test_a_worker_killed_mid_answer_is_replaced_and_the_answer_completes(
    stack, api, workers
):
    session = api.create_session(api.create_agent(model=FAKE_MODEL)["id"])
    with open_ws(stack.web, api, session["id"]) as ws:
        ws.send(
            json.dumps({"type": "message", "content": "[[tokens=60 delay=25]] story"})
        )
        frames = frames_until(ws, is_partial, timeout=30)
        execution_id = next(
            f["execution"]["id"] for f in frames if f["type"] == "execution"
        )
        events = _take_over(stack, api, ws, workers, session["id"], execution_id)

    assert stored_kinds(events) == [
        ("user", "message"),
        ("system", "state"),
        ("agent", "message"),
    ]
    assert events[-1]["content"] == " ".join(f"word{i}" for i in range(60))
    assert events[-1]["turn_complete"]


def test_a_worker_killed_during_a_call_that_may_have_acted_reports_it_interrupted(
    stack, api, workers, endpoint
):
    agent = api.create_agent(
        model=FAKE_MODEL,
        tools=[endpoint.charge_tool()],
    )
    session = api.create_session(agent["id"])
    before = endpoint.requests
    with open_ws(stack.web, api, session["id"]) as ws:
        ws.send(json.dumps({"type": "message", "content": "[[call charge {}]] pay"}))
        wait_for(
            lambda: endpoint.requests > before, timeout=30, what="the call to start"
        )
        execution_id = next(
            e["id"] for e in api.executions(session["id"]) if e["status"] == "running"
        )
        events = _take_over(stack, api, ws, workers, session["id"], execution_id)

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
    assert INTERRUPTED in events[-1]["content"]
    assert events[-1]["turn_complete"]
