"""A turn paused on a delegated child's approval survives its process.

One daphne process on a fresh PostgreSQL database and Redis, with the fake
model server (`testing.live`). A delegating agent's child calls a tool that
needs approval; the turn pauses at every level, the process is killed with
SIGKILL and a fresh one is started, and the decision, sent over REST to the
new process, finishes the turn from what was stored; in `task` mode the
worker is killed too, and a fresh worker runs the resumed turn.
"""

from __future__ import annotations

import json

import pytest

from testing.workers import LiveWorker
from tests.system.conftest import assert_gapless

# Two stacks, a worker and two restarts on a loaded machine take a while.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _call(tool: str, task: str) -> str:
    """A message that makes the fake model call `tool` with `task` (the task's
    own directives escaped, so only the child reads them)."""
    args = json.dumps({"task": task}).replace("[", "\\u005b").replace("]", "\\u005d")
    return f"[[call {tool} {args}]] please"


@pytest.fixture(scope="module")
def stack(stack_factory):
    stack = stack_factory()
    stack.server()
    return stack


@pytest.fixture(scope="module")
def task_stack(stack_factory):
    """`task` mode: the web process only accepts and streams; a worker runs turns."""
    stack = stack_factory(AGENTRY_TURN_EXECUTION="task")
    stack.server("web")
    worker = LiveWorker(stack.env, stack.logs, name="worker").start(wait=False)
    worker.wait_ready()
    stack.worker = worker
    yield stack
    worker.stop(timeout=10)


def _pause_a_tree(stack, api) -> tuple[dict, dict, str, dict]:
    """A turn whose delegated child waits for approval of a read_file call:
    (session, root execution, child id, the child's request)."""
    (stack.base / "workspace").mkdir(exist_ok=True)
    (stack.base / "workspace" / "notes.txt").write_text("remember the milk")
    helper = api.create_agent(
        tools=[{"tool": "read_file", "config": {}, "requires_approval": True}]
    )
    boss = api.create_agent(
        tools=[
            {
                "tool": "delegate",
                "config": {"agent": helper["id"], "name": "ask_helper"},
            }
        ]
    )
    session = api.create_session(boss["id"])
    read = '[[call read_file {"path": "notes.txt"}]] read it'
    paused = api.send_message(session["id"], _call("ask_helper", read))
    root = paused["execution"]
    assert root["status"] == "awaiting_approval", root
    # The blocking answer is the turn's: it shows the child's request.
    (request,) = [
        r
        for e in paused["events"]
        for r in (e["actions"] or {}).get("approval_requests", [])
    ]
    child_id = next(
        e["execution"] for e in paused["events"] if e["execution"] != root["id"]
    )
    assert api.execution(child_id)["status"] == "awaiting_approval"
    return session, root, child_id, request


def _approve_and_check(api, session, root, child_id, request) -> None:
    """Approves over REST with the child's id; the turn completes."""
    response = api.post(
        f"/api/executions/{child_id}/approve/",
        json={"decisions": {request["tool_call_id"]: True}},
    )
    assert response.status_code == 200, response.text
    done = response.json()["execution"]
    assert (done["id"], done["status"]) == (root["id"], "succeeded"), done
    child = api.execution(child_id)
    assert child["status"] == "succeeded" and "remember the milk" in child["output"]
    assert done["output"] == f"The tool said: {child['output']}"
    assert done["usage"]["requests"] == 4

    events = api.all_events(session["id"])
    assert_gapless(events)
    calls = [e["metadata"]["tool_call_id"] for e in events if e["kind"] == "tool_call"]
    results = [
        e["metadata"]["tool_call_id"] for e in events if e["kind"] == "tool_result"
    ]
    assert len(calls) == len(set(calls)) == 2, "no call is stored twice"
    assert sorted(results) == sorted(calls)
    assert [e["execution"] for e in events if e["turn_complete"]] == [root["id"]]


def test_approval_inside_a_child_across_a_restart(stack):
    server = stack.servers[0]
    api = stack.user(server)
    session, root, child_id, request = _pause_a_tree(stack, api)

    server.kill()
    server.proc = None
    server.start()

    _approve_and_check(api, session, root, child_id, request)


def test_approval_inside_a_child_across_a_restart_in_task_mode(task_stack):
    """The web process and the worker are both killed and started afresh."""
    web = task_stack.servers[0]
    api = task_stack.user(web)
    session, root, child_id, request = _pause_a_tree(task_stack, api)

    for process in (web, task_stack.worker):
        process.kill()
        process.proc = None
    web.start()
    task_stack.worker.start(wait=False)
    task_stack.worker.wait_ready()

    _approve_and_check(api, session, root, child_id, request)
