"""Tools that require approval: the turn pauses, the user decides, it resumes."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from sessions_app.models import AgentExecution
from tests.plugins.runtime import access_token, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)

WRITE = '[[call write_file {"path": "out.txt", "content": "written"}]] save it'


def pauses(frame: dict) -> bool:
    return (
        frame.get("type") == "execution"
        and frame["execution"]["status"] == "awaiting_approval"
    )


@pytest.fixture
async def paused(fake_llm, user, make_agent, make_session, ws_connect):
    """A session whose turn waits for approval of a write_file call."""
    agent = await sync_to_async(make_agent)(
        user, tools=[{"tool": "write_file", "config": {}, "requires_approval": True}]
    )
    session = await sync_to_async(make_session)(user, agent=agent)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": WRITE})
    frames = await ws.until(pauses)
    yield ws, session, frames
    await ws.close()


def stored(frames):
    return [
        f["event"] for f in frames if f["type"] == "event" and not f["event"]["partial"]
    ]


async def test_a_call_needing_approval_pauses_the_turn(paused, settings):
    _ws, session, frames = paused
    kinds = [(e["author"], e["kind"]) for e in stored(frames)]
    assert kinds == [("user", "message"), ("agent", "tool_call"), ("system", "state")]
    request = stored(frames)[-1]["actions"]["approval_requests"]
    assert [(r["tool_name"], r["args"]) for r in request] == [
        ("write_file", {"path": "out.txt", "content": "written"})
    ]
    assert not (settings.REPO_ROOT / "out.txt").exists(), (
        "nothing runs before the decision"
    )
    execution = await AgentExecution.objects.aget(session=session)
    assert execution.status == "awaiting_approval" and execution.finished_at is None


async def test_approving_runs_the_tool_and_finishes_the_turn(paused, settings):
    ws, _session, frames = paused
    call_id = stored(frames)[-1]["actions"]["approval_requests"][0]["tool_call_id"]
    execution_id = frames[-1]["execution"]["id"]
    await ws.send(
        {"type": "approve", "execution": execution_id, "decisions": {call_id: True}}
    )
    resumed = await ws.until(is_terminal)
    kinds = [(e["author"], e["kind"]) for e in stored(resumed)]
    assert kinds == [("user", "state"), ("tool", "tool_result"), ("agent", "message")]
    assert stored(resumed)[1]["metadata"]["is_error"] is False
    assert (settings.REPO_ROOT / "out.txt").read_text() == "written"
    done = resumed[-1]["execution"]
    assert done["id"] == execution_id and done["status"] == "succeeded"
    assert done["usage"]["requests"] == 2, (
        "usage adds up over the paused and resumed runs"
    )


async def test_denying_answers_the_model_with_the_refusal(paused, settings):
    ws, _session, frames = paused
    call_id = stored(frames)[-1]["actions"]["approval_requests"][0]["tool_call_id"]
    await ws.send(
        {
            "type": "approve",
            "execution": frames[-1]["execution"]["id"],
            "decisions": {call_id: {"approved": False, "message": "not today"}},
        }
    )
    resumed = await ws.until(is_terminal)
    result = next(e for e in stored(resumed) if e["kind"] == "tool_result")
    assert result["metadata"]["is_error"] is True and "not today" in result["content"]
    assert resumed[-1]["execution"]["status"] == "succeeded"
    assert not (settings.REPO_ROOT / "out.txt").exists()


@pytest.mark.parametrize(
    "decisions,code",
    [
        ({}, "invalid_approval"),
        ({"nope": True}, "invalid_approval"),
        ("yes", "invalid_approval"),
    ],
)
async def test_bad_decisions_are_refused_and_the_turn_stays_paused(
    paused, decisions, code
):
    ws, session, frames = paused
    await ws.send(
        {
            "type": "approve",
            "execution": frames[-1]["execution"]["id"],
            "decisions": decisions,
        }
    )
    assert (await ws.recv())["error"]["code"] == code
    assert (
        await AgentExecution.objects.aget(session=session)
    ).status == "awaiting_approval"


async def test_a_new_message_abandons_the_pending_approval(paused):
    ws, _session, frames = paused
    await ws.send({"type": "message", "content": "[[tokens=3]] never mind"})
    after = await ws.until(
        lambda f: is_terminal(f) and f["execution"]["input"].endswith("never mind")
    )
    statuses = {
        f["execution"]["id"]: f["execution"]["status"]
        for f in after
        if f["type"] == "execution"
    }
    assert statuses[frames[-1]["execution"]["id"]] == "cancelled"
    assert after[-1]["execution"]["status"] == "succeeded"
    abandoned = await AgentExecution.objects.aget(pk=frames[-1]["execution"]["id"])
    assert abandoned.error_code == "approval_abandoned"


async def test_approving_over_rest_and_isolation(paused, user, other_user, settings):
    _ws, _session, frames = paused
    call_id = stored(frames)[-1]["actions"]["approval_requests"][0]["tool_call_id"]
    url = f"/api/executions/{frames[-1]['execution']['id']}/approve/"
    body = {"decisions": {call_id: True}}
    stranger = await AsyncClient().post(
        url,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(other_user)}"},
    )
    assert stranger.status_code == 404
    response = await AsyncClient().post(
        url,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["execution"]["status"] == "succeeded"
    again = await AsyncClient().post(
        url,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )
    assert (
        again.status_code == 409
        and again.json()["error"]["code"] == "not_awaiting_approval"
    )
