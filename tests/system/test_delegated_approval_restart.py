"""A turn paused on a delegated child's approval survives its process.

One daphne process on a fresh PostgreSQL database and Redis, with the fake
model server (`testing.live`). A delegating agent's child calls a tool that
needs approval; the turn pauses at every level, the process is killed with
SIGKILL and a fresh one is started, and the decision, sent over REST to the
new process, finishes the turn from what was stored.
"""

from __future__ import annotations

import json

import pytest

from tests.system.conftest import assert_gapless

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


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


def test_approval_inside_a_child_across_a_restart(stack):
    server = stack.servers[0]
    api = stack.user(server)
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

    server.kill()
    server.proc = None
    server.start()

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
