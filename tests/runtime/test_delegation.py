"""Delegation and workflows end to end over the websocket: the real ASGI app,
channel layer and database, and pydantic-ai's OpenAI model talking HTTP to
the fake model server, for the delegating agent and its children alike."""

from __future__ import annotations

import io
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from sessions_app.models import AgentExecution, Event

pytestmark = pytest.mark.django_db(transaction=True)


def delegate(agent, name: str = "ask_helper", **entry) -> dict:
    return {
        "tool": "delegate",
        "config": {"agent": str(agent.pk), "name": name, "description": "Ask."},
        **entry,
    }


def call(tool: str, task: str) -> str:
    """A message that makes the fake model call `tool` with `task`. The task's
    brackets are JSON-escaped: the child's prompt carries its directives, the
    parent's own message does not (the fake model reads the last user
    message's directives)."""
    args = json.dumps({"task": task}).replace("[", "\\u005b").replace("]", "\\u005d")
    return f"[[call {tool} {args}]] please"


def root_ended(frame: dict) -> bool:
    execution = frame.get("execution") or {}
    return (
        frame.get("type") == "execution"
        and execution.get("status") in ("succeeded", "failed", "cancelled")
        and execution.get("parent") is None
    )


@pytest.fixture
def agents(make_agent, user):
    async def make(**fields):
        return await sync_to_async(make_agent)(user, **fields)

    return make


async def tree_of(session) -> list[AgentExecution]:
    return [
        x
        async for x in AgentExecution.objects.filter(session=session).order_by(
            "created_at"
        )
    ]


async def log_of(session) -> list[Event]:
    return [
        e
        async for e in Event.objects.filter(session=session).order_by("sequence_number")
    ]


async def test_a_delegate_tool_runs_the_target_as_a_child_of_the_turn(
    fake_llm, user, agents, new_session, ws_connect
):
    helper = await agents(instructions="You help.")
    boss = await agents(tools=[delegate(helper)])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    await ws.send(
        {"type": "message", "content": call("ask_helper", "[[reply hi-from-child]]")}
    )
    frames = await ws.until(root_ended)

    root, child = await tree_of(session)
    assert (root.parent_id, root.root_id, root.depth) == (None, root.pk, 0)
    assert (child.parent_id, child.root_id, child.depth) == (root.pk, root.pk, 1)
    assert child.agent_id == helper.pk and child.output == "hi-from-child"
    assert root.status == child.status == "succeeded"
    # The child's prompt is the task alone, with the helper's own instructions.
    child_request = next(
        r
        for r in fake_llm.requests
        if "hi-from-child" in json.dumps(r["messages"]) and not r.get("tools")
    )
    assert [m["role"] for m in child_request["messages"]] == ["system", "user"]
    assert child_request["messages"][-1]["content"] == "[[reply hi-from-child]]"

    log = await log_of(session)
    assert [e.sequence_number for e in log] == list(range(1, len(log) + 1))
    result = next(e for e in log if e.kind == "tool_result")
    assert result.execution_id == root.pk and result.content == "hi-from-child"
    mine = [e for e in log if e.execution_id == child.pk]
    assert mine[0].kind == "state" and mine[0].metadata["delegation"]["tool_name"] == (
        "ask_helper"
    )
    assert mine[-1].content == "hi-from-child" and not mine[-1].turn_complete
    delegating_call = next(e for e in log if e.kind == "tool_call")
    assert delegating_call.sequence_number < mine[0].sequence_number
    assert [e for e in log if e.turn_complete][-1].execution_id == root.pk

    streamed = {f["event"]["execution"] for f in frames if f["type"] == "event"}
    assert str(child.pk) in streamed
    child_frames = [
        f["execution"]
        for f in frames
        if f["type"] == "execution" and f["execution"]["id"] == str(child.pk)
    ]
    assert child_frames[0]["parent"] == str(root.pk) and child_frames[0]["depth"] == 1
    # The root's usage counts the tree; the child's only its own request.
    assert child.usage["requests"] == 1
    assert root.usage["requests"] == 3 and root.requests == 2


async def test_the_next_turn_s_history_holds_the_delegating_turn_not_the_child_s_own(
    fake_llm, user, agents, new_session, ws_connect
):
    helper = await agents(instructions="You help.")
    boss = await agents(tools=[delegate(helper)])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    await ws.send(
        {"type": "message", "content": call("ask_helper", "[[reply hi-from-child]]")}
    )
    await ws.until(root_ended)
    fake_llm.requests.clear()
    await ws.send({"type": "message", "content": "[[reply again]] and now?"})
    await ws.until(root_ended)

    [request] = fake_llm.requests
    # The first turn as the session's agent had it: its message, its call of
    # the helper and the helper's answer as the call's result, its reply. The
    # helper's own prompt never appears as a message of the session's user.
    roles = [m["role"] for m in request["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]
    users = [m["content"] for m in request["messages"] if m["role"] == "user"]
    assert users[-1] == "[[reply again]] and now?"
    assert all(content != "[[reply hi-from-child]]" for content in users)


async def test_a_failing_child_is_a_failed_tool_result(
    fake_llm, user, agents, new_session, ws_connect
):
    helper = await agents()
    boss = await agents(tools=[delegate(helper)])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": call("ask_helper", "[[error=500]]")})
    await ws.until(root_ended)

    root, child = await tree_of(session)
    assert (root.status, child.status, child.error_code) == (
        "succeeded",
        "failed",
        "model_error",
    )
    result = next(e for e in await log_of(session) if e.kind == "tool_result")
    assert result.metadata["is_error"] and "model_error" in result.content


async def test_delegation_is_refused_at_run_time_beyond_the_depth_limit(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    settings.AGENTRY_MAX_DELEGATION_DEPTH = 1
    leaf = await agents()
    middle = await agents(tools=[delegate(leaf, "ask_leaf")])
    boss = await agents(tools=[delegate(middle, "ask_middle")])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    inner = call("ask_leaf", "[[reply deep]]")
    await ws.send({"type": "message", "content": call("ask_middle", inner)})
    await ws.until(root_ended)

    runs = await tree_of(session)
    assert [x.depth for x in runs] == [0, 1], "nothing ran at depth 2"
    results = [e for e in await log_of(session) if e.kind == "tool_result"]
    refused = next(e for e in results if e.execution_id == runs[1].pk)
    assert refused.metadata["is_error"] and "deeper than 1" in refused.content


async def test_a_cycle_is_refused_at_run_time(
    fake_llm, user, agents, new_session, ws_connect
):
    # Saved directly (no API), so only the runtime check stands in the way.
    boss = await agents()
    helper = await agents(tools=[delegate(boss, "ask_boss")])
    await sync_to_async(boss.tools.create)(**delegate(helper))
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    back = call("ask_boss", "[[reply loop]]")
    await ws.send({"type": "message", "content": call("ask_helper", back)})
    await ws.until(root_ended)

    runs = await tree_of(session)
    assert len(runs) == 2 and all(x.status == "succeeded" for x in runs)
    refused = next(
        e
        for e in await log_of(session)
        if e.kind == "tool_result" and e.execution_id == runs[1].pk
    )
    assert refused.metadata["is_error"] and "cycle" in refused.content


async def test_a_target_that_is_no_longer_visible_is_refused_at_run_time(
    fake_llm, user, other_user, make_agent, agents, new_session, ws_connect
):
    theirs = await sync_to_async(make_agent)(other_user, visibility="public")
    boss = await agents(tools=[delegate(theirs)])
    theirs.visibility = "private"
    await sync_to_async(theirs.save)()
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": call("ask_helper", "[[reply no]]")})
    await ws.until(root_ended)

    assert len(await tree_of(session)) == 1
    result = next(e for e in await log_of(session) if e.kind == "tool_result")
    assert result.metadata["is_error"] and "not available" in result.content


async def test_cancel_reaches_the_running_child(
    fake_llm, user, agents, new_session, ws_connect
):
    helper = await agents()
    boss = await agents(tools=[delegate(helper)])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    slow = call("ask_helper", "[[tokens=400 delay=25]]")
    await ws.send({"type": "message", "content": slow})
    await ws.until(lambda f: f["type"] == "event" and f["event"]["partial"])
    await ws.send({"type": "cancel"})
    await ws.until(root_ended, timeout=10)

    runs = await tree_of(session)
    assert [x.status for x in runs] == ["cancelled", "cancelled"]


async def test_a_workflow_runs_its_steps_in_order(
    fake_llm, user, agents, new_session, ws_connect
):
    first, second = await agents(), await agents()
    flow = await agents(
        kind="workflow",
        model="",
        workflow={
            "steps": [
                {"name": "draft", "agent": str(first.pk), "prompt": "{input}"},
                {
                    "name": "polish",
                    "agent": str(second.pk),
                    "prompt": "[[reply got {previous}]]",
                },
            ]
        },
    )
    session = await new_session(agent=flow)
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[reply alpha]]")

    root, *steps = await tree_of(session)
    assert root.status == "succeeded" and root.output == "got alpha"
    assert [(x.agent_id, x.output) for x in steps] == [
        (first.pk, "alpha"),
        (second.pk, "got alpha"),
    ]
    assert root.usage["requests"] == 2 and root.requests == 0
    final = [f["event"] for f in frames if f["type"] == "event"][-1]
    assert final["turn_complete"] and final["content"] == "got alpha"
    placed = [
        e.metadata["delegation"]["step"]
        for e in await log_of(session)
        if e.kind == "state" and "delegation" in e.metadata
    ]
    assert placed == ["draft", "polish"]


async def test_a_failing_step_ends_the_workflow(
    fake_llm, user, agents, new_session, ws_connect
):
    first, second = await agents(), await agents()
    flow = await agents(
        kind="workflow",
        model="",
        workflow={
            "steps": [
                {"name": "a", "agent": str(first.pk), "prompt": "{input}"},
                {"name": "b", "agent": str(second.pk)},
            ]
        },
    )
    session = await new_session(agent=flow)
    ws = await ws_connect(user, session)
    await ws.turn("[[error=500]]")

    root, *steps = await tree_of(session)
    assert (root.status, root.error_code) == ("failed", "model_error")
    assert len(steps) == 1


def test_the_seeded_agents_delegate_offline_and_chat_shows_the_nesting(user, settings):
    """`make run` with no key: the seeded delegating assistant hands "ask the
    helper to ..." to the repository assistant (offline model), and the
    seeded research workflow runs its two steps; `manage.py chat` indents the
    children's work under the call or step that ran it."""
    (settings.REPO_ROOT / "notes.txt").write_text("remember the milk")
    call_command("seed_agents", "--owner", user.username, stdout=io.StringIO())

    out = io.StringIO()
    call_command(
        "chat",
        "delegating-assistant",
        "--user",
        user.username,
        "--message",
        "ask the helper to read notes.txt",
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    call_at = next(
        i for i, x in enumerate(lines) if x.startswith("  [tool] ask_helper")
    )
    assert lines[call_at + 1] == "  -> Repository assistant: read notes.txt"
    assert lines[call_at + 2].startswith(
        '      [tool] read_file({"path": "notes.txt"})'
    )
    assert any(x.startswith("    ") and "remember the milk" in x for x in lines)
    root, child = AgentExecution.objects.order_by("created_at")
    assert child.parent_id == root.pk and root.status == child.status == "succeeded"
    assert "remember the milk" in root.output

    out = io.StringIO()
    call_command(
        "chat",
        "research-workflow",
        "--user",
        user.username,
        "--message",
        "why is the sky blue?",
        stdout=out,
    )
    text = out.getvalue()
    assert "  -> [plan] Research planner: Plan research for this question" in text
    assert "  -> [write] Research writer: Question: why is the sky blue?" in text
    assert "[succeeded," in text.splitlines()[-1]
