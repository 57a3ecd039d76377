"""Tools that require approval: the turn pauses, the user decides, it resumes."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from sessions_app import approvals, lifecycle, runner, services
from sessions_app.models import AgentExecution, ApprovalDecision
from tests.plugins.runtime import access_token, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)

WRITE = '[[call write_file {"path": "out.txt", "content": "written"}]] save it'


def pauses(frame: dict) -> bool:
    return (
        frame.get("type") == "execution"
        and frame["execution"]["status"] == "awaiting_approval"
    )


@pytest.fixture(autouse=True)
def _user_may_write_the_repository(user):
    """write_file in the default `repo` scope runs only for developers and admins."""
    user.role = "developer"
    user.save(update_fields=["role"])


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
    assert abandoned.approval_expires_at is None, "nothing is left to expire"


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


# ---- audit, edited arguments, expiry ------------------------------------------


async def api_get(user, path: str):
    return await AsyncClient().get(
        path, headers={"Authorization": f"Bearer {access_token(user)}"}
    )


async def api_post(user, path: str, body: dict):
    return await AsyncClient().post(
        path,
        body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )


async def pause_with(make_agent, make_session, ws_connect, user, *tools, prompt=WRITE):
    """Opens a session on an agent with `tools` and sends `prompt`; returns the
    socket, the paused execution's id and its approval requests."""
    agent = await sync_to_async(make_agent)(user, tools=list(tools))
    session = await sync_to_async(make_session)(user, agent=agent)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": prompt})
    frames = await ws.until(pauses)
    return (
        ws,
        frames[-1]["execution"]["id"],
        stored(frames)[-1]["actions"]["approval_requests"],
    )


def write_tool(**entry):
    return {"tool": "write_file", "config": {}, "requires_approval": True, **entry}


async def test_every_decision_is_kept_and_listed_for_the_sessions_user_only(
    paused, user, other_user
):
    ws, _session, frames = paused
    request = stored(frames)[-1]["actions"]["approval_requests"][0]
    execution_id = frames[-1]["execution"]["id"]
    await ws.send(
        {
            "type": "approve",
            "execution": execution_id,
            "decisions": {
                request["tool_call_id"]: {"approved": False, "message": "no thanks"}
            },
        }
    )
    await ws.until(is_terminal)
    url = f"/api/executions/{execution_id}/approvals/"
    listed = (await api_get(user, url)).json()["results"]
    assert len(listed) == 1
    kept = listed[0]
    assert {k: kept[k] for k in ("tool_call_id", "tool_name", "args")} == {
        "tool_call_id": request["tool_call_id"],
        "tool_name": "write_file",
        "args": {"path": "out.txt", "content": "written"},
    }
    assert (kept["decision"], kept["message"], kept["via"]) == (
        "denied",
        "no thanks",
        "websocket",
    )
    assert kept["decided_by"] == str(user.pk) and kept["edited_args"] is None
    assert kept["decided_at"]
    assert (await api_get(other_user, url)).status_code == 404


async def test_edited_args_are_what_the_tool_runs_with_when_the_entry_allows_it(
    fake_llm, user, make_agent, make_session, ws_connect, settings
):
    _ws, execution_id, requests = await pause_with(
        make_agent, make_session, ws_connect, user, write_tool(allow_edit=True)
    )
    assert requests[0]["allow_edit"] is True
    assert "path" in requests[0]["args_schema"]["properties"]
    edited = {"path": "edited.txt", "content": "changed by the user"}
    response = await api_post(
        user,
        f"/api/executions/{execution_id}/approve/",
        {
            "decisions": {
                requests[0]["tool_call_id"]: {"approved": True, "args": edited}
            }
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["execution"]["status"] == "succeeded"
    assert (settings.REPO_ROOT / "edited.txt").read_text() == "changed by the user"
    assert not (settings.REPO_ROOT / "out.txt").exists()
    kept = (await api_get(user, f"/api/executions/{execution_id}/approvals/")).json()
    assert kept["results"][0]["edited_args"] == edited
    assert kept["results"][0]["via"] == "rest"


async def test_edited_args_are_refused_when_the_entry_does_not_allow_editing(
    paused, user
):
    ws, _session, frames = paused
    request = stored(frames)[-1]["actions"]["approval_requests"][0]
    assert request["allow_edit"] is False and "args_schema" not in request
    execution_id = frames[-1]["execution"]["id"]
    decisions = {
        request["tool_call_id"]: {
            "approved": True,
            "args": {"path": "x", "content": ""},
        }
    }
    await ws.send(
        {"type": "approve", "execution": execution_id, "decisions": decisions}
    )
    assert (await ws.recv())["error"]["code"] == "edit_not_allowed"
    response = await api_post(
        user, f"/api/executions/{execution_id}/approve/", {"decisions": decisions}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "edit_not_allowed"
    execution = await AgentExecution.objects.aget(pk=execution_id)
    assert execution.status == "awaiting_approval"
    assert not await ApprovalDecision.objects.filter(execution=execution).aexists()


@pytest.mark.parametrize(
    "args",
    [
        {"path": "a.txt"},  # content missing
        {"path": 5, "content": "x"},  # wrong type
        {"path": "a.txt", "content": "x", "mode": "w"},  # not a parameter
        ["a.txt", "x"],  # not an object
    ],
)
async def test_edited_args_must_match_the_tools_schema(
    fake_llm, user, make_agent, make_session, ws_connect, settings, args
):
    _ws, execution_id, requests = await pause_with(
        make_agent, make_session, ws_connect, user, write_tool(allow_edit=True)
    )
    response = await api_post(
        user,
        f"/api/executions/{execution_id}/approve/",
        {"decisions": {requests[0]["tool_call_id"]: {"approved": True, "args": args}}},
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_args"
    execution = await AgentExecution.objects.aget(pk=execution_id)
    assert execution.status == "awaiting_approval"
    assert not list(settings.REPO_ROOT.iterdir()), "nothing ran"


async def test_the_pause_records_when_its_approval_expires(
    fake_llm, user, make_agent, make_session, ws_connect
):
    before = timezone.now()
    _ws, execution_id, requests = await pause_with(
        make_agent, make_session, ws_connect, user, write_tool(approval_ttl_seconds=90)
    )
    execution = await AgentExecution.objects.aget(pk=execution_id)
    deadline = execution.approval_expires_at
    assert deadline is not None
    assert before + dt.timedelta(seconds=90) <= deadline
    assert deadline <= timezone.now() + dt.timedelta(seconds=90)
    assert requests[0]["expires_at"].startswith(deadline.strftime("%Y-%m-%dT%H:%M"))


async def test_an_expired_approval_is_denied_and_the_turn_goes_on(
    fake_llm, user, make_agent, make_session, ws_connect, settings
):
    ws, execution_id, requests = await pause_with(
        make_agent, make_session, ws_connect, user, write_tool(approval_ttl_seconds=1)
    )
    assert await lifecycle.expire_approvals() == 0, "not yet expired"
    later = timezone.now() + dt.timedelta(seconds=2)
    assert await lifecycle.expire_approvals(now=later) == 1
    resumed = await ws.until(is_terminal)
    events = stored(resumed)
    assert [(e["author"], e["kind"]) for e in events] == [
        ("system", "state"),
        ("tool", "tool_result"),
        ("agent", "message"),
    ]
    result = events[1]
    assert result["metadata"]["is_error"] is True
    assert "approval_expired" in result["content"]
    assert resumed[-1]["execution"]["status"] == "succeeded"
    assert not (settings.REPO_ROOT / "out.txt").exists()
    execution = await AgentExecution.objects.aget(pk=execution_id)
    assert execution.approval_expires_at is None
    kept = (await api_get(user, f"/api/executions/{execution_id}/approvals/")).json()
    assert [
        (k["tool_call_id"], k["decision"], k["via"], k["decided_by"])
        for k in kept["results"]
    ] == [(requests[0]["tool_call_id"], "expired", "expiry", None)]


async def test_the_supervisor_expires_approvals_on_its_own(
    fake_llm, user, make_agent, make_session, ws_connect, settings
):
    settings.AGENTRY_APPROVAL_SWEEP_SECONDS = 0.1
    ws, _execution_id, _requests = await pause_with(
        make_agent, make_session, ws_connect, user, write_tool(approval_ttl_seconds=1)
    )
    resumed = await ws.until(is_terminal, timeout=10)
    result = next(e for e in stored(resumed) if e["kind"] == "tool_result")
    assert "approval_expired" in result["content"]
    assert resumed[-1]["execution"]["status"] == "succeeded"


async def test_two_sweeps_at_once_resume_an_expired_turn_once(
    fake_llm, user, make_agent, make_session, ws_connect
):
    ws, execution_id, _requests = await pause_with(
        make_agent, make_session, ws_connect, user, write_tool(approval_ttl_seconds=1)
    )
    later = timezone.now() + dt.timedelta(seconds=2)
    claims = await asyncio.gather(
        *(sync_to_async(approvals.claim_expired)(later) for _ in range(4))
    )
    assert sum(len(c) for c in claims) == 1
    claimed = next(c for c in claims if c)[0]
    await runner.resume_claimed(*claimed)
    resumed = await ws.until(is_terminal)
    assert resumed[-1]["execution"]["status"] == "succeeded"
    assert (
        await ApprovalDecision.objects.filter(execution_id=execution_id).acount() == 1
    )


async def test_a_decision_after_the_deadline_is_refused(paused, user):
    ws, _session, frames = paused
    request = stored(frames)[-1]["actions"]["approval_requests"][0]
    execution_id = frames[-1]["execution"]["id"]
    # The deadline has passed; the sweep has not acted yet.
    await AgentExecution.objects.filter(pk=execution_id).aupdate(
        approval_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    response = await api_post(
        user,
        f"/api/executions/{execution_id}/approve/",
        {"decisions": {request["tool_call_id"]: True}},
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "approval_expired"
    assert await lifecycle.expire_approvals() == 1
    resumed = await ws.until(is_terminal)
    assert resumed[-1]["execution"]["status"] == "succeeded"


async def test_calls_with_different_ttls_expire_together_at_the_earliest(
    fake_llm, user, make_agent, make_session, ws_connect, settings
):
    (settings.REPO_ROOT / "a.txt").write_text("alpha")
    both = '[[call write_file {"path": "out.txt", "content": "x"}]] ' + (
        '[[call read_file {"path": "a.txt"}]] do both'
    )
    ws, execution_id, requests = await pause_with(
        make_agent,
        make_session,
        ws_connect,
        user,
        write_tool(approval_ttl_seconds=60),
        {
            "tool": "read_file",
            "config": {},
            "requires_approval": True,
            "approval_ttl_seconds": 3600,
        },
        prompt=both,
    )
    assert len(requests) == 2
    execution = await AgentExecution.objects.aget(pk=execution_id)
    assert execution.approval_expires_at <= timezone.now() + dt.timedelta(seconds=60)
    assert len({r["expires_at"] for r in requests}) == 1
    later = timezone.now() + dt.timedelta(seconds=61)
    assert await lifecycle.expire_approvals(now=later) == 1
    resumed = await ws.until(is_terminal)
    results = [e for e in stored(resumed) if e["kind"] == "tool_result"]
    assert len(results) == 2
    assert all("approval_expired" in r["content"] for r in results)
    kept = (await api_get(user, f"/api/executions/{execution_id}/approvals/")).json()
    assert sorted(k["decision"] for k in kept["results"]) == ["expired", "expired"]


async def test_the_admin_shows_an_executions_decisions_read_only(
    paused, admin_user, user
):
    ws, _session, frames = paused
    request = stored(frames)[-1]["actions"]["approval_requests"][0]
    execution_id = frames[-1]["execution"]["id"]
    await ws.send(
        {
            "type": "approve",
            "execution": execution_id,
            "decisions": {request["tool_call_id"]: {"approved": False}},
        }
    )
    await ws.until(is_terminal)
    client = AsyncClient()
    await sync_to_async(client.force_login)(admin_user)
    page = await client.get(
        reverse("admin:sessions_app_agentexecution_change", args=[execution_id])
    )
    assert page.status_code == 200
    html = page.content.decode()
    assert "Approval decisions" in html
    assert request["tool_call_id"] in html
    assert "Denied" in html and "Websocket" in html
    assert 'name="approval_decisions-0-decision"' not in html, "read-only"


async def test_decisions_read_for_one_pause_do_not_claim_a_later_pause(paused, user):
    _ws, _session, frames = paused
    execution_id = frames[-1]["execution"]["id"]
    first = (await AgentExecution.objects.aget(pk=execution_id)).approval_expires_at
    # Meanwhile the turn resumed and paused again on other calls.
    await AgentExecution.objects.filter(pk=execution_id).aupdate(
        approval_expires_at=first + dt.timedelta(seconds=30)
    )
    with pytest.raises(services.NotAwaitingApproval):
        await sync_to_async(services.execution_resume)(
            execution_id,
            decided_by=user.pk,
            decisions=[],
            via="rest",
            paused_until=first,
        )
    execution = await AgentExecution.objects.aget(pk=execution_id)
    assert execution.status == "awaiting_approval"
    assert not await ApprovalDecision.objects.filter(execution=execution).aexists()
