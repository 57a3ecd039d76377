"""What a websocket client is told when it is refused: every close has a reason,
and a refused message names the client_message_id it was sent with."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async

from tests.plugins.runtime import access_token, is_status, is_terminal, open_ws

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = "[[tokens=400 delay=25]] take your time"


async def close_of(path: str, headers=None) -> dict:
    communicator, connected, _ = await open_ws(path, headers=headers)
    assert connected
    while True:
        output = await communicator.receive_output(5)
        if output["type"] == "websocket.close":
            await communicator.wait()
            return output


async def ticket_of(user) -> str:
    from accounts.services import ws_ticket_issue

    return await sync_to_async(ws_ticket_issue)(
        user=user, issued_at=time.time(), expires_at=None
    )


@pytest.mark.parametrize(
    ("query", "code", "reason"),
    [
        (
            "",
            4401,
            "authentication required: ?ticket= (POST /api/auth/ws-ticket/) or ?token=",
        ),
        ("?token=garbage", 4401, "access token invalid or expired"),
        ("?ticket=garbage", 4401, "ticket invalid, expired or already used"),
    ],
)
async def test_a_refused_socket_is_told_what_was_wrong_with_its_credentials(
    user, new_session, query, code, reason
):
    session = await new_session()
    close = await close_of(f"/ws/sessions/{session.pk}/{query}")
    assert (close["code"], close["reason"]) == (code, reason)


async def test_a_used_ticket_closes_with_its_reason(user, new_session):
    session = await new_session()
    path = f"/ws/sessions/{session.pk}/?ticket={await ticket_of(user)}"
    first, connected, _ = await open_ws(path)
    assert connected
    close = await close_of(path)
    assert close == {
        "type": "websocket.close",
        "code": 4401,
        "reason": "ticket invalid, expired or already used",
    }
    await first.disconnect()


async def test_an_unknown_session_and_a_foreign_origin_close_with_reasons(
    user, new_session
):
    session = await new_session()
    token = access_token(user)
    unknown = await close_of(
        f"/ws/sessions/00000000-0000-0000-0000-000000000000/?token={token}"
    )
    assert (unknown["code"], unknown["reason"]) == (4404, "no such session")
    foreign = await close_of(
        f"/ws/sessions/{session.pk}/?token={token}",
        headers=[(b"origin", b"https://evil.example")],
    )
    assert (foreign["code"], foreign["reason"]) == (4403, "origin not allowed")


async def test_logging_out_everywhere_closes_open_sockets_with_a_reason(
    user, new_session, ws_connect
):
    from accounts.services import user_logout_everywhere

    ws = await ws_connect(user, await new_session())
    # A pong: the socket has finished connecting (and joined the user's group).
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}
    await sync_to_async(user_logout_everywhere)(user=user)
    while (output := await ws.communicator.receive_output(5))["type"] != (
        "websocket.close"
    ):
        pass
    assert (output["code"], output["reason"]) == (4401, "logged out")


async def test_a_busy_session_names_the_refused_client_message_id(
    fake_llm, user, new_session, ws_connect
):
    ws = await ws_connect(user, await new_session())
    await ws.send({"type": "message", "content": SLOW, "client_message_id": "m-1"})
    await ws.until(is_status("running"))
    await ws.send({"type": "message", "content": "again", "client_message_id": "m-2"})
    refused = (await ws.until(lambda f: f["type"] == "error"))[-1]["error"]
    assert refused["code"] == "session_busy"
    assert refused["details"] == {"client_message_id": "m-2"}
    await ws.send({"type": "cancel"})
    await ws.until(is_terminal)
    await ws.close()
