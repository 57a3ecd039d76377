"""Approvals inside a delegation tree: a delegated child (or a workflow step)
whose tool needs approval pauses the whole turn, and the decision, given on
the root execution or the child, resumes it. Over the real ASGI app, channel
layer and database, with pydantic-ai's OpenAI model talking HTTP to the fake
model server for every level."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient
from django.utils import timezone

from sessions_app import lifecycle
from sessions_app.models import AgentExecution, ApprovalDecision, Event
from tests.plugins.runtime import access_token
from tests.runtime.test_delegation import call, delegate, log_of, tree_of

pytestmark = pytest.mark.django_db(transaction=True)

WRITE = '[[call write_file {"path": "out.txt", "content": "written"}]] save it'


def root_status(*statuses: str):
    def match(frame: dict) -> bool:
        execution = frame.get("execution") or {}
        return (
            frame.get("type") == "execution"
            and execution.get("parent") is None
            and execution.get("status") in statuses
        )

    return match


root_paused = root_status("awaiting_approval")
root_ended = root_status("succeeded", "failed", "cancelled")


def stored(frames: list[dict]) -> list[dict]:
    return [
        f["event"] for f in frames if f["type"] == "event" and not f["event"]["partial"]
    ]


def write_tool(**entry) -> dict:
    return {"tool": "write_file", "config": {}, "requires_approval": True, **entry}


@pytest.fixture(autouse=True)
def _user_may_write_the_repository(user):
    """write_file in the default `repo` scope runs only for developers and admins."""
    user.role = "developer"
    user.save(update_fields=["role"])


@pytest.fixture
def agents(make_agent, user):
    async def make(**fields):
        return await sync_to_async(make_agent)(user, **fields)

    return make


async def paused_tree(agents, new_session, ws_connect, user, **helper_entry):
    """A turn whose delegated child waits for approval of a write_file call:
    (socket, session, frames up to the root's pause)."""
    helper = await agents(tools=[write_tool(**helper_entry)])
    boss = await agents(tools=[delegate(helper)])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": call("ask_helper", WRITE)})
    frames = await ws.until(root_paused)
    return ws, session, frames


def request_of(frames: list[dict]) -> dict:
    """The approval request the child stored (the only one of the turn)."""
    (request,) = [
        r
        for e in stored(frames)
        if e["kind"] == "state"
        for r in e["actions"].get("approval_requests", [])
    ]
    return request


async def assert_completed_with_the_childs_answer(session, settings) -> None:
    root, child = await tree_of(session)
    assert (root.status, child.status) == ("succeeded", "succeeded")
    assert (settings.REPO_ROOT / "out.txt").read_text() == "written"
    assert child.output.startswith("The tool said:")
    # The child's answer is the delegating call's result, and the parent's
    # model answers from it.
    assert root.output == f"The tool said: {child.output}"
    log = await log_of(session)
    assert [e.sequence_number for e in log] == list(range(1, len(log) + 1))
    calls = [e.metadata["tool_call_id"] for e in log if e.kind == "tool_call"]
    results = [e.metadata["tool_call_id"] for e in log if e.kind == "tool_result"]
    assert len(calls) == len(set(calls)) == 2, "no call is stored twice"
    assert sorted(results) == sorted(calls), "each call has one result"
    delegated = next(
        e for e in log if e.kind == "tool_result" and e.execution_id == root.pk
    )
    assert delegated.content == child.output and not delegated.metadata["is_error"]
    assert [e.execution_id for e in log if e.turn_complete] == [root.pk]
    # One turn, one tree: the root's usage counts the child's requests.
    assert child.usage["requests"] == 2
    assert root.usage["requests"] == 4


async def test_a_childs_call_needing_approval_pauses_every_level_and_the_root_id_resumes_it(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    ws, session, frames = await paused_tree(agents, new_session, ws_connect, user)
    root, child = await tree_of(session)
    assert (root.status, child.status) == ("awaiting_approval", "awaiting_approval")
    assert root.approval_expires_at == child.approval_expires_at is not None
    assert not (settings.REPO_ROOT / "out.txt").exists(), "nothing ran yet"

    # The child's call and its request are stored and streamed under the child.
    events = stored(frames)
    request_event = next(e for e in events if e["actions"].get("approval_requests"))
    assert request_event["execution"] == str(child.pk)
    assert request_event["author"] == "system"
    request = request_of(frames)
    assert request["tool_name"] == "write_file"
    child_call = next(
        e for e in events if e["kind"] == "tool_call" and e["content"] == "write_file"
    )
    assert child_call["execution"] == str(child.pk)
    assert child_call["metadata"]["tool_call_id"] == request["tool_call_id"]
    # The root's pause names the child it waits on instead.
    waiting = events[-1]
    assert (waiting["execution"], waiting["kind"]) == (str(root.pk), "state")
    assert "approval_requests" not in waiting["actions"]
    assert waiting["actions"]["waiting_on"][0]["execution"] == str(child.pk)
    paused = [
        f["execution"]["id"]
        for f in frames
        if f["type"] == "execution" and f["execution"]["status"] == "awaiting_approval"
    ]
    assert paused == [str(child.pk), str(root.pk)], "the child pauses, then the root"

    await ws.send(
        {
            "type": "approve",
            "execution": str(root.pk),
            "decisions": {request["tool_call_id"]: True},
        }
    )
    resumed = await ws.until(root_ended)
    assert resumed[-1]["execution"]["status"] == "succeeded"
    decision = stored(resumed)[0]
    assert (decision["author"], decision["execution"]) == ("user", str(child.pk))
    assert decision["actions"]["approvals"][request["tool_call_id"]]["approved"]
    final = stored(resumed)[-1]
    assert final["turn_complete"] and final["execution"] == str(root.pk)
    await assert_completed_with_the_childs_answer(session, settings)
    kept = [d async for d in ApprovalDecision.objects.all()]
    assert [(d.execution_id, d.via) for d in kept] == [(child.pk, "websocket")]


async def test_the_childs_id_resumes_the_tree_over_rest(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    _ws, session, frames = await paused_tree(agents, new_session, ws_connect, user)
    root, child = await tree_of(session)
    request = request_of(frames)
    response = await approve_over_rest(user, child.pk, {request["tool_call_id"]: True})
    # The blocking answer is the turn's: its root, run on to its end.
    assert response.status_code == 200, response.content
    answer = response.json()["execution"]
    assert (answer["id"], answer["status"]) == (str(root.pk), "succeeded")
    await assert_completed_with_the_childs_answer(session, settings)
    kept = [d async for d in ApprovalDecision.objects.all()]
    assert [(d.execution_id, d.via) for d in kept] == [(child.pk, "rest")]
    # Either id answers once: the tree is no longer paused.
    for execution_id in (child.pk, root.pk):
        again = await approve_over_rest(
            user, execution_id, {request["tool_call_id"]: True}
        )
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "not_awaiting_approval"


async def approve_over_rest(user, execution_id, decisions: dict):
    return await AsyncClient().post(
        f"/api/executions/{execution_id}/approve/",
        {"decisions": decisions},
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )


async def test_denying_a_childs_call_answers_the_child_with_the_refusal(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    ws, session, frames = await paused_tree(agents, new_session, ws_connect, user)
    _root, child = await tree_of(session)
    request = request_of(frames)
    await ws.send(
        {
            "type": "approve",
            "execution": str(child.pk),
            "decisions": {
                request["tool_call_id"]: {"approved": False, "message": "not today"}
            },
        }
    )
    resumed = await ws.until(root_ended)
    assert resumed[-1]["execution"]["status"] == "succeeded"
    denied = next(e for e in stored(resumed) if e["kind"] == "tool_result")
    assert denied["execution"] == str(child.pk)
    assert denied["metadata"]["is_error"] and "not today" in denied["content"]
    assert not (settings.REPO_ROOT / "out.txt").exists()
    root, child = await tree_of(session)
    assert (root.status, child.status) == ("succeeded", "succeeded")
    assert "not today" in child.output


async def test_decisions_must_answer_the_childs_calls(
    fake_llm, user, agents, new_session, ws_connect
):
    ws, session, _frames = await paused_tree(agents, new_session, ws_connect, user)
    root, _child = await tree_of(session)
    await ws.send(
        {"type": "approve", "execution": str(root.pk), "decisions": {"nope": True}}
    )
    assert (await ws.recv())["error"]["code"] == "invalid_approval"
    assert [x.status for x in await tree_of(session)] == [
        "awaiting_approval",
        "awaiting_approval",
    ]


async def test_a_new_message_abandons_the_pending_approval_at_every_level(
    fake_llm, user, agents, new_session, ws_connect
):
    ws, session, _frames = await paused_tree(agents, new_session, ws_connect, user)
    await ws.send({"type": "message", "content": "[[tokens=3]] never mind"})
    await ws.until(
        lambda f: root_ended(f) and f["execution"]["input"].endswith("never mind")
    )
    root, child, newer = await tree_of(session)
    assert [(x.status, x.error_code) for x in (child, root)] == [
        ("cancelled", "approval_abandoned"),
        ("cancelled", "approval_abandoned"),
    ]
    assert root.approval_expires_at is None and child.approval_expires_at is None
    assert newer.status == "succeeded"
    abandoned = [
        e
        async for e in Event.objects.filter(error_code="approval_abandoned").order_by(
            "sequence_number"
        )
    ]
    assert [(e.execution_id, e.turn_complete) for e in abandoned] == [
        (child.pk, False),
        (root.pk, True),
    ]


async def test_an_expired_childs_approval_is_denied_and_the_turn_goes_on(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    ws, session, _frames = await paused_tree(
        agents, new_session, ws_connect, user, approval_ttl_seconds=1
    )
    assert await lifecycle.expire_approvals() == 0, "not yet expired"
    later = timezone.now() + dt.timedelta(seconds=2)
    assert await lifecycle.expire_approvals(now=later) == 1
    resumed = await ws.until(root_ended)
    assert resumed[-1]["execution"]["status"] == "succeeded"
    result = next(e for e in stored(resumed) if e["kind"] == "tool_result")
    assert "approval_expired" in result["content"]
    _root, child = await tree_of(session)
    kept = [d async for d in ApprovalDecision.objects.all()]
    assert [(d.execution_id, d.decision, d.via) for d in kept] == [
        (child.pk, "expired", "expiry")
    ]


async def test_a_workflow_step_needing_approval_pauses_the_workflow_and_resumes_at_it(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    first = await agents(tools=[write_tool()])
    second = await agents()
    flow = await agents(
        kind="workflow",
        model="",
        workflow={
            "steps": [
                {"name": "write", "agent": str(first.pk), "prompt": "{input}"},
                {
                    "name": "report",
                    "agent": str(second.pk),
                    "prompt": "[[reply reported {previous}]]",
                },
            ]
        },
    )
    session = await new_session(agent=flow)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": WRITE})
    frames = await ws.until(root_paused)
    root, step = await tree_of(session)
    assert (root.status, step.status) == ("awaiting_approval", "awaiting_approval")
    waiting = stored(frames)[-1]
    assert waiting["execution"] == str(root.pk)
    assert waiting["actions"]["waiting_on"][0]["step"] == "write"

    request = request_of(frames)
    await ws.send(
        {
            "type": "approve",
            "execution": str(step.pk),
            "decisions": {request["tool_call_id"]: True},
        }
    )
    resumed = await ws.until(root_ended)
    assert resumed[-1]["execution"]["status"] == "succeeded"
    root, step, report = await tree_of(session)
    assert (settings.REPO_ROOT / "out.txt").read_text() == "written"
    assert step.status == report.status == "succeeded"
    assert root.output == f"reported {step.output}"
    assert root.usage["requests"] == 3
    log = await log_of(session)
    assert [e.sequence_number for e in log] == list(range(1, len(log) + 1))
    placed = [
        e.metadata["delegation"]["step"]
        for e in log
        if e.kind == "state" and "delegation" in e.metadata
    ]
    assert placed == ["write", "report"], "the resumed step is not run again"


async def test_cancelling_the_resumed_turn_ends_every_level(
    fake_llm, user, agents, new_session, ws_connect
):
    helper = await agents(tools=[write_tool()])
    boss = await agents(tools=[delegate(helper)])
    session = await new_session(agent=boss)
    ws = await ws_connect(user, session)
    # The child's answer after the approved call streams slowly.
    slow = f"{WRITE} [[delay=200]]"
    await ws.send({"type": "message", "content": call("ask_helper", slow)})
    frames = await ws.until(root_paused)
    root, child = await tree_of(session)
    await ws.send(
        {
            "type": "approve",
            "execution": str(root.pk),
            "decisions": {request_of(frames)["tool_call_id"]: True},
        }
    )
    await ws.until(
        lambda f: (
            f["type"] == "event"
            and f["event"]["partial"]
            and f["event"]["execution"] == str(child.pk)
        )
    )
    await ws.send({"type": "cancel"})
    await ws.until(root_ended)
    assert [x.status for x in await tree_of(session)] == ["cancelled", "cancelled"]


def test_the_terminal_chat_asks_for_a_childs_call_inside_its_block(
    fake_llm, user, make_agent, settings
):
    helper = make_agent(user, name="Writer", tools=[write_tool()])
    boss = make_agent(user, tools=[delegate(helper)])
    out = io.StringIO()
    call_command(
        "chat",
        str(boss.pk),
        "--approve",
        "all",
        "--message",
        call("ask_helper", WRITE),
        stdout=out,
    )
    lines = out.getvalue().splitlines()
    opened = next(i for i, x in enumerate(lines) if x.startswith("  -> Writer:"))
    waiting = next(i for i, x in enumerate(lines) if "[waiting]" in x)
    asked = next(i for i, x in enumerate(lines) if "approve write_file(" in x)
    # The request shows indented in the child's block, then the question.
    assert opened < waiting < asked
    assert lines[waiting].startswith("      [waiting] Waiting for approval to run")
    assert lines[-1].startswith("[succeeded,")
    assert (settings.REPO_ROOT / "out.txt").read_text() == "written"
    root, child = AgentExecution.objects.order_by("created_at")
    assert (root.status, child.status) == ("succeeded", "succeeded")
    assert ApprovalDecision.objects.get().via == "terminal"


async def test_a_child_whose_agent_became_unavailable_ends_failed_on_resume(
    fake_llm, user, agents, new_session, ws_connect, settings
):
    ws, session, frames = await paused_tree(agents, new_session, ws_connect, user)
    root, child = await tree_of(session)
    helper = await sync_to_async(lambda: child.agent)()
    helper.is_active = False
    await sync_to_async(helper.save)()
    await ws.send(
        {
            "type": "approve",
            "execution": str(root.pk),
            "decisions": {request_of(frames)["tool_call_id"]: True},
        }
    )
    resumed = await ws.until(root_ended)
    assert resumed[-1]["execution"]["status"] == "succeeded"
    root, child = await tree_of(session)
    assert (child.status, child.error_code) == ("failed", "delegation_refused")
    assert not (settings.REPO_ROOT / "out.txt").exists()
    refused = next(
        e
        for e in stored(resumed)
        if e["kind"] == "tool_result" and e["execution"] == str(root.pk)
    )
    assert refused["metadata"]["is_error"] and "not available" in refused["content"]
    streamed = [e["sequence_number"] for e in stored(resumed)]
    assert streamed == list(range(streamed[0], streamed[0] + len(streamed)))
