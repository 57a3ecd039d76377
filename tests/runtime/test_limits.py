"""Limits on starting turns (DESIGN.md section 9): one per-user rate for REST,
SSE, agent runs and the websocket, a cap on a session's queue and on a user's
active turns. Each test sets its own low limits; the cache starts empty."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import AsyncClient

from sessions_app import limits
from sessions_app.models import AgentExecution, Event, Session
from sessions_app.services import TurnRejected
from tests.plugins.runtime import access_token, is_status, is_terminal

pytestmark = pytest.mark.django_db(transaction=True)


def error_of(frame: dict) -> str | None:
    return frame["error"]["code"] if frame.get("type") == "error" else None


async def post(user, path: str, data: dict, **headers):
    return await AsyncClient().post(
        path,
        data,
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}", **headers},
    )


async def test_one_turn_rate_counts_rest_sse_runs_and_the_websocket(
    settings, user, other_user, make_agent, make_session, ws_connect
):
    settings.AGENTRY_TURN_RATE = "3/min"
    agent = await sync_to_async(make_agent)(user, model="offline")
    session = await sync_to_async(make_session)(user, agent)
    messages = f"/api/sessions/{session.pk}/messages/"

    assert (await post(user, messages, {"content": "one"})).status_code == 200
    streamed = await post(
        user, messages, {"content": "two"}, Accept="text/event-stream"
    )
    assert streamed.status_code == 200
    b"".join([chunk async for chunk in streamed.streaming_content])
    run = await post(user, f"/api/agents/{agent.pk}/run/", {"input": "three"})
    assert run.status_code == 200

    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "four"})
    refused = await ws.recv()
    assert error_of(refused) == "rate_limited"
    await ws.send({"type": "ping"})
    assert (await ws.recv()) == {"type": "pong"}  # the socket stays open

    for extra in ({}, {"Accept": "text/event-stream"}):
        response = await post(user, messages, {"content": "five"}, **extra)
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(response["Retry-After"]) <= 60
    sessions_before = await Session.objects.acount()
    response = await post(user, f"/api/agents/{agent.pk}/run/", {"input": "six"})
    assert response.status_code == 429
    assert await Session.objects.acount() == sessions_before

    # Refused turns stored nothing; another user has a rate of their own.
    assert await Event.objects.filter(content__in=["four", "five", "six"]).acount() == 0
    theirs = await sync_to_async(make_agent)(other_user, model="offline")
    others = await sync_to_async(make_session)(other_user, theirs)
    answer = await post(
        other_user, f"/api/sessions/{others.pk}/messages/", {"content": "mine"}
    )
    assert answer.status_code == 200


async def test_a_repeated_client_message_id_is_not_counted_again(
    settings, user, make_agent, make_session
):
    settings.AGENTRY_TURN_RATE = "1/min"
    agent = await sync_to_async(make_agent)(user, model="offline")
    session = await sync_to_async(make_session)(user, agent)
    body = {"content": "once", "client_message_id": "m-1"}
    path = f"/api/sessions/{session.pk}/messages/"
    first = await post(user, path, body)
    again = await post(user, path, body)
    assert first.status_code == again.status_code == 200
    assert again.json()["execution"]["id"] == first.json()["execution"]["id"]


async def test_a_sessions_queue_is_capped(
    settings, fake_llm, user, make_session, ws_connect
):
    settings.AGENTRY_MAX_QUEUED_TURNS = 1
    session = await sync_to_async(make_session)(user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "[[hang]] busy"})
    await ws.until(is_status("running"))
    await ws.send(
        {"type": "message", "content": "[[tokens=1]] a", "multitask": "enqueue"}
    )
    await ws.until(is_status("queued"))
    await ws.send(
        {"type": "message", "content": "[[tokens=1]] b", "multitask": "enqueue"}
    )
    frames = await ws.until(lambda f: f.get("type") == "error")
    assert error_of(frames[-1]) == "queue_full"
    await ws.send({"type": "cancel"})
    await ws.until(lambda f: is_terminal(f) and f["execution"]["input"].endswith(" a"))
    assert await AgentExecution.objects.filter(session=session).acount() == 2


async def test_a_users_active_turns_are_capped(
    settings, fake_llm, user, other_user, make_agent, make_session, ws_connect
):
    settings.AGENTRY_MAX_ACTIVE_TURNS = 2
    sessions = [await sync_to_async(make_session)(user) for _ in range(3)]
    sockets = [await ws_connect(user, s) for s in sessions]
    for ws in sockets[:2]:
        await ws.send({"type": "message", "content": "[[hang]] busy"})
        await ws.until(is_status("running"))
    await sockets[2].send({"type": "message", "content": "[[tokens=1]] third"})
    refused = await sockets[2].recv()
    assert error_of(refused) == "too_many_active_turns"
    assert await AgentExecution.objects.filter(session=sessions[2]).acount() == 0

    # Another user's turns are not counted against this one's.
    theirs = await sync_to_async(make_session)(other_user)
    their_ws = await ws_connect(other_user, theirs)
    frames = await their_ws.turn("[[tokens=1]] mine")
    assert frames[-1]["execution"]["status"] == "succeeded"

    for ws in sockets[:2]:
        await ws.send({"type": "cancel"})
        await ws.until(is_terminal)
    frames = await sockets[2].turn("[[tokens=1]] third again")
    assert frames[-1]["execution"]["status"] == "succeeded"
    for ws in [*sockets, their_ws]:
        await ws.close()


async def test_a_model_the_server_stopped_allowing_is_refused_at_run_time(
    settings, fake_llm, user, make_session, ws_connect
):
    session = await sync_to_async(make_session)(user)  # openai-chat:fake
    settings.AGENTRY_ALLOWED_MODELS = ["anthropic:*"]
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=1]] hello")
    assert frames[-1]["execution"]["status"] == "failed"
    assert frames[-1]["execution"]["error_code"] == "agent_config_error"
    assert "not allowed" in frames[-1]["execution"]["error_message"]


def test_a_window_this_process_knows_still_counts_after_its_counter_is_lost(
    settings, user
):
    """Once a process knows a user's window, a turn costs one increment; a
    counter lost meanwhile (evicted, flushed) opens a new window and counts."""
    settings.AGENTRY_TURN_RATE = "2/min"

    def admit():
        return limits.turn_admit(
            session=None,
            user_id=user.pk,
            client_message_id="",
            queued=False,
            queued_in_session=0,
            active_of_user=0,
        )

    admit()
    cache.clear()
    admit()
    admit()
    with pytest.raises(TurnRejected) as refused:
        admit()
    assert refused.value.code == "rate_limited"
