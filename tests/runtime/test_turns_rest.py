"""Turns over REST: the blocking answer, SSE, cancel and `agents/{id}/run/`,
through the real ASGI handler (Django's AsyncClient)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from sessions_app.db import run_db
from sessions_app.models import AgentExecution, Event, Session
from tests.plugins.runtime import access_token, is_partial, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = "[[tokens=8 delay=2]] say something"


class BearerClient:
    """An AsyncClient that sends a real access token with every request
    (AsyncClient's default headers do not reach the ASGI scope)."""

    def __init__(self, user) -> None:
        self.client = AsyncClient()
        self.authorization = f"Bearer {access_token(user)}"

    async def post(self, path: str, data=None, *, headers=None, **kwargs):
        headers = {"Authorization": self.authorization, **(headers or {})}
        return await self.client.post(path, data, headers=headers, **kwargs)


@pytest.fixture
def client_for():
    return BearerClient


def parse_sse(body: str) -> list[tuple[dict[str, str], dict]]:
    frames = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "data" in fields:
            frames.append((fields, json.loads(fields["data"])))
    return frames


async def test_blocking_message_answers_the_finished_turn(
    fake_llm, user, new_session, client_for
):
    session = await new_session()
    response = await client_for(user).post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": QUICK},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["execution"]["status"] == "succeeded"
    assert [e["sequence_number"] for e in body["events"]] == [1, 2]
    assert body["events"][0]["content"] == QUICK
    assert not [e for e in body["events"] if e["partial"]]
    assert (
        body["events"][-1]["turn_complete"]
        and body["execution"]["output"] == body["events"][-1]["content"]
    )


async def test_path_without_trailing_slash_works_too(
    fake_llm, user, new_session, client_for
):
    session = await new_session()
    response = await client_for(user).post(
        f"/api/sessions/{session.pk}/messages",
        {"content": QUICK},
        content_type="application/json",
    )
    assert response.status_code == 200


async def test_failed_turn_still_answers_200_with_the_failed_execution(
    fake_llm, user, new_session, client_for
):
    session = await new_session()
    response = await client_for(user).post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": "[[error=500]] boom"},
        content_type="application/json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (
        body["execution"]["status"] == "failed"
        and body["execution"]["error_code"] == "model_error"
    )
    assert body["events"][-1]["kind"] == "error"


@pytest.mark.parametrize("how", ["accept", "query"])
async def test_sse_streams_the_same_frames_with_ids(
    fake_llm, user, new_session, client_for, how
):
    session = await new_session()
    client = client_for(user)
    url = f"/api/sessions/{session.pk}/messages/" + (
        "?stream=true" if how == "query" else ""
    )
    headers = {"Accept": "text/event-stream"} if how == "accept" else {}
    response = await client.post(
        url, {"content": QUICK}, content_type="application/json", headers=headers
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    body = "".join([chunk.decode() async for chunk in response.streaming_content])
    frames = parse_sse(body)
    assert frames[0][0]["event"] == "event" and frames[0][0]["id"] == "1"
    assert frames[1][1]["execution"]["status"] == "running"
    assert any(is_partial(f) for _, f in frames)
    partial_fields = [fields for fields, f in frames if is_partial(f)]
    assert all("id" not in fields for fields in partial_fields), "partials carry no id"
    assert (
        is_terminal(frames[-1][1])
        and frames[-1][1]["execution"]["status"] == "succeeded"
    )


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({}, 400, "validation_error"),
        ({"content": ""}, 400, "validation_error"),
        ({"content": "a\u0000b"}, 400, None),
        ({"content": "hi", "multitask": "never"}, 400, "validation_error"),
        ({"content": "hi", "attachments": ["nope"]}, 400, "validation_error"),
        ({"content": "x" * 100_001}, 413, "message_too_large"),
    ],
)
async def test_bad_message_bodies_are_refused_and_store_nothing(
    user, new_session, client_for, body, status, code
):
    session = await new_session()
    response = await client_for(user).post(
        f"/api/sessions/{session.pk}/messages/", body, content_type="application/json"
    )
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert code is None or error["code"] == code
    assert not await Event.objects.filter(session=session).aexists()


async def test_busy_session_answers_409_and_stores_nothing(
    fake_llm, user, new_session, client_for, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[tokens=300 delay=20]] slow"})
    await ws.until(is_partial)
    response = await client_for(user).post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": "second", "client_message_id": "m-2"},
        content_type="application/json",
    )
    assert (
        response.status_code == 409
        and response.json()["error"]["code"] == "session_busy"
    )
    assert response.json()["error"]["details"] == {"client_message_id": "m-2"}

    cancel = await client_for(user).post(f"/api/sessions/{session.pk}/cancel/")
    assert cancel.status_code == 202 and cancel.json() == {"cancelled": True}
    frames = await ws.until(is_terminal, timeout=10)
    assert frames[-1]["execution"]["status"] == "cancelled"
    assert await Event.objects.filter(session=session, author="user").acount() == 1


async def test_repeated_client_message_id_answers_the_existing_execution(
    fake_llm, user, new_session, client_for
):
    session = await new_session()
    client = client_for(user)
    url = f"/api/sessions/{session.pk}/messages/"
    first = await client.post(
        url,
        {"content": QUICK, "client_message_id": "c1"},
        content_type="application/json",
    )
    again = await client.post(
        url,
        {"content": QUICK, "client_message_id": "c1"},
        content_type="application/json",
    )
    assert again.status_code == 200
    assert again.json()["execution"]["id"] == first.json()["execution"]["id"]
    assert again.json()["events"] == first.json()["events"]
    assert await AgentExecution.objects.filter(session=session).acount() == 1


async def test_other_users_session_is_404(
    fake_llm, user, other_user, make_session, client_for
):
    session = await sync_to_async(make_session)(other_user)
    client = client_for(user)
    for path in ("messages", "cancel"):
        response = await client.post(
            f"/api/sessions/{session.pk}/{path}/",
            {"content": "hi"},
            content_type="application/json",
        )
        assert (
            response.status_code == 404
            and response.json()["error"]["code"] == "not_found"
        )


async def test_anonymous_turn_is_401(new_session):
    session = await new_session()
    response = await AsyncClient().post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": "hi"},
        content_type="application/json",
    )
    assert response.status_code == 401


async def test_agent_run_opens_a_session_then_continues_it(
    fake_llm, user, make_agent, client_for
):
    agent = await sync_to_async(make_agent)(user)
    client = client_for(user)
    first = await client.post(
        f"/api/agents/{agent.pk}/run/",
        {"input": "[[tokens=4]] one"},
        content_type="application/json",
    )
    assert first.status_code == 200, first.content
    body = first.json()
    assert (
        body["execution"]["status"] == "succeeded"
        and body["output"] == body["events"][-1]["content"]
    )
    session = await Session.objects.aget(pk=body["session"])
    assert session.agent_id == agent.pk and session.user_id == user.pk

    second = await client.post(
        f"/api/agents/{agent.pk}/run/",
        {"input": "[[tokens=4]] two", "session": body["session"]},
        content_type="application/json",
    )
    assert second.json()["session"] == body["session"]
    assert second.json()["events"][0]["sequence_number"] == 3


async def test_agent_run_refuses_a_session_of_another_agent(
    user, make_agent, make_session, client_for
):
    agent = await sync_to_async(make_agent)(user)
    elsewhere = await sync_to_async(make_session)(user)
    response = await client_for(user).post(
        f"/api/agents/{agent.pk}/run/",
        {"input": "hi", "session": str(elsewhere.pk)},
        content_type="application/json",
    )
    assert response.status_code == 400


async def test_agent_run_of_another_users_private_agent_is_404(
    user, other_user, make_agent, client_for
):
    agent = await sync_to_async(make_agent)(other_user)
    response = await client_for(user).post(
        f"/api/agents/{agent.pk}/run/", {"input": "hi"}, content_type="application/json"
    )
    assert response.status_code == 404


async def test_sse_client_that_leaves_does_not_stop_the_turn(
    fake_llm, user, new_session, client_for
):
    session = await new_session()
    response = await client_for(user).post(
        f"/api/sessions/{session.pk}/messages/?stream=true",
        {"content": "[[tokens=30 delay=10]] go"},
        content_type="application/json",
    )
    iterator = response.streaming_content.__aiter__()
    await iterator.__anext__()
    await iterator.aclose()
    async with asyncio.timeout(15):
        while not await AgentExecution.objects.filter(
            session=session, status="succeeded"
        ).aexists():
            await asyncio.sleep(0.05)


async def test_deleting_the_session_mid_turn_answers_404_not_500(
    fake_llm, user, new_session, client_for
):
    session = await new_session()
    client = client_for(user)
    request = asyncio.create_task(
        client.post(
            f"/api/sessions/{session.pk}/messages/",
            {"content": "[[tokens=100 delay=10]] long"},
            content_type="application/json",
        )
    )
    # The blocked view holds the thread-sensitive executor the async ORM
    # uses, so the test reads and deletes through worker threads.
    running = AgentExecution.objects.filter(session=session, status="running")
    async with asyncio.timeout(10):
        while not await run_db(running.exists):
            await asyncio.sleep(0.02)
    await run_db(Session.objects.filter(pk=session.pk).delete)
    response = await request
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "session_deleted"
    healthy = await client.post(
        f"/api/sessions/{(await new_session()).pk}/messages/",
        {"content": QUICK},
        content_type="application/json",
    )
    assert healthy.status_code == 200
