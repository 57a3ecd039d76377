"""Sessions on other users' agents: pinned to a version, and revoked when the
agent turns private, inactive or is deleted (DESIGN.md section 9).

Owners change their agents through the real API; what a turn runs is read
from what the fake model server received.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.test import AsyncClient
from django.urls import reverse

from agents.models import Agent
from sessions_app.models import AgentExecution, Event, Session
from tests.plugins.runtime import access_token, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = "[[tokens=3]] hello"
LIST = '[[call list_directory {"path": "."}]] look around'


class Api:
    """Requests of one user through the real ASGI handler, with a real token."""

    def __init__(self, user) -> None:
        self.client = AsyncClient()
        self.headers = {"Authorization": f"Bearer {access_token(user)}"}

    async def get(self, path: str):
        return await self.client.get(path, headers=self.headers)

    async def post(self, path: str, data: Any = None, **headers: str):
        return await self.client.post(
            path,
            data or {},
            content_type="application/json",
            headers={**self.headers, **headers},
        )

    async def patch(self, path: str, data: Any):
        return await self.client.patch(
            path, data, content_type="application/json", headers=self.headers
        )

    async def delete(self, path: str):
        return await self.client.delete(path, headers=self.headers)


def instructions_seen(fake_llm) -> str:
    """The system text of the newest request the model received."""
    messages = fake_llm.requests[-1]["messages"]
    return "\n".join(
        m["content"] if isinstance(m["content"], str) else json.dumps(m["content"])
        for m in messages
        if m["role"] == "system"
    )


@pytest.fixture
def public_agent(make_agent, other_user):
    """`other_user`'s public agent at version 1."""

    async def make(**fields: Any) -> Agent:
        fields.setdefault("instructions", "Speak as version one.")
        return await sync_to_async(make_agent)(
            other_user, visibility="public", **fields
        )

    return make


async def open_session(user, agent: Agent) -> dict:
    response = await Api(user).post("/api/sessions/", {"agent": str(agent.pk)})
    assert response.status_code == 201, response.content
    return response.json()


async def change_agent(owner, agent: Agent, **fields: Any) -> dict:
    response = await Api(owner).patch(f"/api/agents/{agent.pk}/", fields)
    assert response.status_code == 200, response.content
    return response.json()


def is_error(frame: dict) -> bool:
    return frame.get("type") == "error"


def pauses(frame: dict) -> bool:
    return (
        frame.get("type") == "execution"
        and frame["execution"]["status"] == "awaiting_approval"
    )


# ------------------------------------------------------------------ run endpoint


async def test_run_endpoint_refuses_another_users_public_agent_once_inactive(
    fake_llm, user, other_user, public_agent
):
    agent = await public_agent()
    await change_agent(other_user, agent, is_active=False)
    assert (await Api(user).get(f"/api/agents/{agent.pk}/")).status_code == 404
    response = await Api(user).post(f"/api/agents/{agent.pk}/run/", {"input": "hi"})
    assert response.status_code == 404, response.content
    assert not await Session.objects.filter(agent=agent).aexists()
    assert fake_llm.requests == [], "the model was never called"


async def test_run_endpoint_refuses_an_existing_session_once_the_agent_is_private(
    fake_llm, user, other_user, public_agent
):
    agent = await public_agent()
    first = await Api(user).post(f"/api/agents/{agent.pk}/run/", {"input": QUICK})
    assert first.status_code == 200, first.content
    await change_agent(other_user, agent, visibility="private")
    again = await Api(user).post(
        f"/api/agents/{agent.pk}/run/",
        {"input": QUICK, "session": first.json()["session"]},
    )
    assert again.status_code == 404
    assert await AgentExecution.objects.filter(agent=agent).acount() == 1


# ------------------------------------------------------------------ pinning


async def test_sessions_of_others_are_pinned_and_the_owners_follow_the_latest(
    user, other_user, public_agent
):
    agent = await public_agent()
    theirs = await open_session(user, agent)
    owners = await open_session(other_user, agent)
    assert theirs["agent_version"] == 1 and owners["agent_version"] == "latest"
    await change_agent(other_user, agent, instructions="Speak as version two.")
    later = await open_session(user, agent)
    assert later["agent_version"] == 2, "a new session pins the version of its day"
    listed = (await Api(user).get(f"/api/sessions/{theirs['id']}/")).json()
    assert listed["agent_version"] == 1


async def test_a_pinned_session_runs_its_version_until_it_asks_for_the_latest(
    fake_llm, user, other_user, public_agent
):
    agent = await public_agent()
    session = await open_session(user, agent)
    await change_agent(other_user, agent, instructions="Speak as version two.")
    api = Api(user)
    url = f"/api/sessions/{session['id']}/messages/"

    pinned = await api.post(url, {"content": QUICK})
    assert pinned.status_code == 200, pinned.content
    assert pinned.json()["execution"]["agent_version"] == 1
    assert "version one" in instructions_seen(fake_llm)
    assert "version two" not in instructions_seen(fake_llm)

    patched = await api.patch(
        f"/api/sessions/{session['id']}/", {"agent_version": "latest"}
    )
    assert patched.status_code == 200 and patched.json()["agent_version"] == "latest"
    latest = await api.post(url, {"content": QUICK})
    assert latest.json()["execution"]["agent_version"] == 2
    assert "version two" in instructions_seen(fake_llm)

    await change_agent(other_user, agent, instructions="Speak as version three.")
    await api.post(url, {"content": QUICK})
    assert "version three" in instructions_seen(fake_llm), "it now follows the owner"


async def test_the_owners_session_runs_the_latest_version(
    fake_llm, other_user, public_agent
):
    agent = await public_agent()
    session = await open_session(other_user, agent)
    await change_agent(other_user, agent, instructions="Speak as version two.")
    answer = await Api(other_user).post(
        f"/api/sessions/{session['id']}/messages/", {"content": QUICK}
    )
    assert answer.json()["execution"]["agent_version"] == 2
    assert "version two" in instructions_seen(fake_llm)


@pytest.mark.parametrize("value", [2, 1, "2", "newest", None, True])
async def test_agent_version_takes_only_latest(user, public_agent, value):
    agent = await public_agent()
    session = await open_session(user, agent)
    response = await Api(user).patch(
        f"/api/sessions/{session['id']}/", {"agent_version": value}
    )
    assert response.status_code == 400, response.content
    assert "agent_version" in response.json()["error"]["details"]
    assert (await Session.objects.aget(pk=session["id"])).agent_version == 1


async def test_run_endpoint_and_chat_command_pin_the_sessions_they_open(
    fake_llm, user, public_agent
):
    agent = await public_agent()
    run = await Api(user).post(f"/api/agents/{agent.pk}/run/", {"input": QUICK})
    assert (await Session.objects.aget(pk=run.json()["session"])).agent_version == 1
    await sync_to_async(call_command)(
        "chat", str(agent.pk), "--user", user.username, "--message", QUICK
    )
    chat = await Session.objects.filter(agent=agent, title="Terminal chat").afirst()
    assert chat is not None and chat.agent_version == 1


async def test_a_paused_turn_resumes_on_the_version_that_paused_it(
    fake_llm, other_user, public_agent
):
    agent = await public_agent(
        tools=[{"tool": "list_directory", "config": {}, "requires_approval": True}]
    )
    session = await open_session(other_user, agent)
    api = Api(other_user)
    paused = await api.post(
        f"/api/sessions/{session['id']}/messages/", {"content": LIST}
    )
    assert paused.json()["execution"]["status"] == "awaiting_approval"
    request = paused.json()["events"][-1]["actions"]["approval_requests"][0]
    await change_agent(other_user, agent, instructions="Speak as version two.")

    resumed = await api.post(
        f"/api/executions/{paused.json()['execution']['id']}/approve/",
        {"decisions": {request["tool_call_id"]: True}},
    )
    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["execution"]["status"] == "succeeded"
    assert resumed.json()["execution"]["agent_version"] == 1
    assert "version one" in instructions_seen(fake_llm)
    assert "version two" not in instructions_seen(fake_llm)


# ------------------------------------------------------------------ revocation

REVOCATIONS = [{"visibility": "private"}, {"is_active": False}]


async def assert_history_readable(user, session_id: str, events: int) -> None:
    api = Api(user)
    assert (await api.get(f"/api/sessions/{session_id}/")).status_code == 200
    listed = await api.get(f"/api/sessions/{session_id}/events/")
    assert listed.status_code == 200
    assert len(listed.json()["results"]) == events
    executions = await api.get(f"/api/executions/?session={session_id}")
    assert executions.status_code == 200 and executions.json()["results"]


@pytest.mark.parametrize("revocation", REVOCATIONS)
@pytest.mark.parametrize("stream", [False, True], ids=["blocking", "sse"])
async def test_a_revoked_agent_stops_answering_over_rest_and_sse(
    fake_llm, user, other_user, public_agent, revocation, stream
):
    agent = await public_agent()
    session = await open_session(user, agent)
    api = Api(user)
    url = f"/api/sessions/{session['id']}/messages/"
    assert (await api.post(url, {"content": QUICK})).status_code == 200
    stored = await Event.objects.filter(session_id=session["id"]).acount()
    await change_agent(other_user, agent, **revocation)

    response = await api.post(
        url + ("?stream=true" if stream else ""), {"content": QUICK}
    )
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "agent_unavailable"
    assert await Event.objects.filter(session_id=session["id"]).acount() == stored
    assert len(fake_llm.requests) == 1
    await assert_history_readable(user, session["id"], stored)


@pytest.mark.parametrize("revocation", REVOCATIONS)
async def test_a_revoked_agent_stops_answering_on_the_websocket(
    fake_llm, user, other_user, public_agent, ws_connect, revocation
):
    agent = await public_agent()
    session = await open_session(user, agent)
    ws = await ws_connect(user, await Session.objects.aget(pk=session["id"]))
    assert (await ws.turn(QUICK))[-1]["execution"]["status"] == "succeeded"
    stored = await Event.objects.filter(session_id=session["id"]).acount()
    await change_agent(other_user, agent, **revocation)

    await ws.send({"type": "message", "content": QUICK})
    refused = await ws.recv()
    assert refused["type"] == "error"
    assert refused["error"]["code"] == "agent_unavailable"
    await ws.send({"type": "ping"})
    assert (await ws.recv())["type"] == "pong", "the socket stays open"
    await ws.send({"type": "resume", "after_sequence": 0})
    replayed = [await ws.recv() for _ in range(stored)]
    assert [f["event"]["sequence_number"] for f in replayed] == list(
        range(1, stored + 1)
    )
    await ws.close()
    reconnected = await ws_connect(user, await Session.objects.aget(pk=session["id"]))
    await reconnected.close()
    await assert_history_readable(user, session["id"], stored)


async def test_the_owners_sessions_are_refused_while_the_agent_is_inactive(
    fake_llm, other_user, public_agent
):
    agent = await public_agent()
    session = await open_session(other_user, agent)
    await change_agent(other_user, agent, is_active=False)
    api = Api(other_user)
    url = f"/api/sessions/{session['id']}/messages/"
    refused = await api.post(url, {"content": QUICK})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "agent_unavailable"
    await change_agent(other_user, agent, is_active=True)
    assert (await api.post(url, {"content": QUICK})).status_code == 200


async def test_a_queued_turn_of_a_revoked_agent_fails_as_unavailable(
    fake_llm, user, other_user, public_agent, ws_connect
):
    agent = await public_agent()
    session = await open_session(user, agent)
    ws = await ws_connect(user, await Session.objects.aget(pk=session["id"]))
    await ws.send({"type": "message", "content": "[[tokens=40 delay=20]] slow"})
    await ws.until(
        lambda f: f.get("type") == "execution" and f["execution"]["status"] == "running"
    )
    await ws.send({"type": "message", "content": QUICK, "multitask": "enqueue"})
    await ws.until(
        lambda f: f.get("type") == "execution" and f["execution"]["status"] == "queued"
    )
    await change_agent(other_user, agent, visibility="private")
    frames = await ws.until(
        lambda f: is_terminal(f) and f["execution"]["input"] == QUICK
    )
    assert frames[-1]["execution"]["status"] == "failed"
    assert frames[-1]["execution"]["error_code"] == "agent_unavailable"
    assert len(fake_llm.requests) == 1, "only the first turn reached the model"


@pytest.mark.parametrize("revocation", REVOCATIONS)
async def test_approving_a_paused_turn_is_refused_once_the_agent_is_revoked(
    fake_llm, user, other_user, public_agent, ws_connect, revocation
):
    agent = await public_agent(
        tools=[{"tool": "list_directory", "config": {}, "requires_approval": True}]
    )
    session = await open_session(user, agent)
    ws = await ws_connect(user, await Session.objects.aget(pk=session["id"]))
    await ws.send({"type": "message", "content": LIST})
    frames = await ws.until(pauses)
    execution_id = frames[-1]["execution"]["id"]
    state = next(
        f["event"]
        for f in frames
        if f["type"] == "event" and f["event"]["kind"] == "state"
    )
    decisions = {state["actions"]["approval_requests"][0]["tool_call_id"]: True}
    await change_agent(other_user, agent, **revocation)

    response = await Api(user).post(
        f"/api/executions/{execution_id}/approve/", {"decisions": decisions}
    )
    assert response.status_code == 404, response.content
    assert response.json()["error"]["code"] == "agent_unavailable"
    await ws.send(
        {"type": "approve", "execution": execution_id, "decisions": decisions}
    )
    refused = await ws.until(is_error)
    assert refused[-1]["error"]["code"] == "agent_unavailable"
    execution = await AgentExecution.objects.aget(pk=execution_id)
    assert execution.status == "awaiting_approval"
    assert len(fake_llm.requests) == 1, "nothing ran after the pause"


# ------------------------------------------------------------------ deletion


async def test_deleting_an_agent_others_use_deactivates_it(
    fake_llm, user, other_user, public_agent
):
    agent = await public_agent()
    session = await open_session(user, agent)
    await Api(user).post(f"/api/sessions/{session['id']}/messages/", {"content": QUICK})
    stored = await Event.objects.filter(session_id=session["id"]).acount()
    assert stored == 2
    response = await Api(other_user).delete(f"/api/agents/{agent.pk}/")
    assert response.status_code == 204
    await agent.arefresh_from_db()
    assert agent.is_active is False
    assert (await Api(user).get(f"/api/agents/{agent.pk}/")).status_code == 404
    await assert_history_readable(user, session["id"], stored)
    refused = await Api(user).post(
        f"/api/sessions/{session['id']}/messages/", {"content": QUICK}
    )
    assert refused.json()["error"]["code"] == "agent_unavailable"


async def test_deleting_an_agent_only_its_owner_used_deletes_it(
    other_user, public_agent
):
    agent = await public_agent()
    await open_session(other_user, agent)
    response = await Api(other_user).delete(f"/api/agents/{agent.pk}/")
    assert response.status_code == 204
    assert not await Agent.objects.filter(pk=agent.pk).aexists()
    assert not await Session.objects.filter(agent_id=agent.pk).aexists()


def test_deleting_in_the_admin_deactivates_an_agent_others_use(
    client, admin_user, user, other_user, make_agent, make_session
):
    used = make_agent(other_user, visibility="public")
    make_session(user, agent=used)
    unused = make_agent(other_user)
    client.force_login(admin_user)
    for agent in (used, unused):
        page = client.post(
            reverse("admin:agents_agent_delete", args=[agent.pk]), {"post": "yes"}
        )
        assert page.status_code == 302
    used.refresh_from_db()
    assert used.is_active is False and Session.objects.filter(agent=used).exists()
    assert not Agent.objects.filter(pk=unused.pk).exists()

    changelist = reverse("admin:agents_agent_changelist")
    client.post(
        changelist,
        {"action": "delete_selected", "_selected_action": [used.pk], "post": "yes"},
    )
    assert Agent.objects.filter(pk=used.pk).exists(), "bulk delete deactivates too"
