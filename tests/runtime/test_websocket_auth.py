"""Websocket authorisation for the life of a socket, not only at connect.

Origins are compared with their port; a frame nested too deep is an
`invalid_frame` error, not a crash.
"""

from __future__ import annotations

import json

import pytest

from tests.plugins.runtime import access_token, open_ws

pytestmark = pytest.mark.django_db(transaction=True)


async def make_session_async(make_session, user, **kwargs):
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_session)(user, **kwargs)


async def close_code(communicator, timeout: float = 5) -> int | None:
    """Reads up to the close message (skipping frames) and returns its code."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            await communicator.wait()
            return output.get("code")


# ---- origin


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        # Trusted origins name their port (CSRF_TRUSTED_ORIGINS' defaults).
        (None, "http://localhost:9999"),
        (None, "http://127.0.0.1:1"),
        # The socket's own host, on another port, is another origin.
        (b"localhost:8000", "http://localhost:8001"),
    ],
)
async def test_an_allowed_host_on_a_foreign_port_closes_4403(
    user, make_session, host, origin
):
    session = await make_session_async(make_session, user)
    headers = [(b"origin", origin.encode())]
    if host:
        headers.append((b"host", host))
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?token={access_token(user)}", headers=headers
    )
    assert connected
    assert await close_code(communicator) == 4403


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        (b"localhost:8000", "http://localhost:8000"),
        (b"127.0.0.1:5000", "https://127.0.0.1:5000"),
        (None, "https://localhost:8000"),
    ],
)
async def test_the_sockets_own_origin_or_a_trusted_one_connects(
    user, make_session, host, origin
):
    session = await make_session_async(make_session, user)
    headers = [(b"origin", origin.encode())]
    if host:
        headers.append((b"host", host))
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?token={access_token(user)}", headers=headers
    )
    assert connected
    await communicator.send_json_to({"type": "ping"})
    assert json.loads(await communicator.receive_from(5)) == {"type": "pong"}
    await communicator.disconnect()


# ---- frames


@pytest.mark.parametrize("depth", [101, 100_000])
async def test_a_deeply_nested_frame_is_an_invalid_frame_error(
    user, make_session, ws_connect, depth
):
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)
    await ws.send(
        '{"type": "message", "content": "hi", "x": ' + "[" * depth + "]" * depth + "}"
    )
    frame = await ws.recv()
    assert frame["type"] == "error" and frame["error"]["code"] == "invalid_frame"
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}


# ---- authorisation for the life of the socket


async def post(user, path: str, body=None):
    """POSTs as `user` with a fresh access token, through the REST API."""
    from asgiref.sync import sync_to_async
    from rest_framework.test import APIClient

    from accounts.services import token_pair_for

    def call():
        client = APIClient()
        access = token_pair_for(user)["access_token"]
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
        return client.post(path, body or {}, format="json")

    return await sync_to_async(call)()


async def test_logout_everywhere_closes_open_sockets_4401(
    user, make_session, ws_connect
):
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)
    answer = await post(user, "/api/auth/logout/", {"all": True})
    assert answer.status_code == 204
    # Closed at once, without the client sending anything.
    assert await close_code(ws.communicator) == 4401


async def test_deactivating_the_user_closes_open_sockets_4401(
    user, make_session, ws_connect
):
    from asgiref.sync import sync_to_async

    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)

    def deactivate():
        user.is_active = False
        user.save()

    await sync_to_async(deactivate)()
    assert await close_code(ws.communicator) == 4401


async def test_a_client_frame_rechecks_the_user_once_the_interval_passed(
    user, make_session, ws_connect, settings
):
    from accounts.models import User

    # The interval bounds how long a change that sends no signal goes
    # unnoticed; at 0 every frame re-checks.
    settings.AGENTRY_WS_AUTH_RECHECK_SECONDS = 0
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}
    # A bulk update sends no signal: the next frame finds the user inactive.
    await User.objects.filter(pk=user.pk).aupdate(is_active=False)
    await ws.send({"type": "ping"})
    assert await close_code(ws.communicator) == 4401


async def test_a_socket_closes_4401_when_its_token_expires(user, make_session):
    from datetime import timedelta

    from asgiref.sync import sync_to_async
    from rest_framework_simplejwt.tokens import AccessToken

    session = await make_session_async(make_session, user)

    def short_token() -> str:
        token = AccessToken.for_user(user)
        token.set_exp(lifetime=timedelta(seconds=1))
        return str(token)

    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?token={await sync_to_async(short_token)()}"
    )
    assert connected
    await communicator.send_json_to({"type": "ping"})
    assert json.loads(await communicator.receive_from(5)) == {"type": "pong"}
    assert await close_code(communicator, timeout=5) == 4401


async def test_an_access_token_from_before_logout_everywhere_cannot_connect(
    user, make_session
):
    from accounts.services import token_pair_for

    session = await make_session_async(make_session, user)
    from asgiref.sync import sync_to_async

    old = (await sync_to_async(token_pair_for)(user))["access_token"]
    assert (await post(user, "/api/auth/logout", {"all": True})).status_code == 204
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?token={old}"
    )
    assert connected
    assert await close_code(communicator) == 4401


# ---- tickets


async def buy_ticket(user) -> str:
    answer = await post(user, "/api/auth/ws-ticket/")
    assert answer.status_code == 200, answer.content
    return answer.json()["ticket"]


async def test_a_ticket_opens_one_socket_once(user, make_session):
    session = await make_session_async(make_session, user)
    ticket = await buy_ticket(user)
    path = f"/ws/sessions/{session.pk}/?ticket={ticket}"
    communicator, connected, _ = await open_ws(path)
    assert connected
    await communicator.send_json_to({"type": "ping"})
    assert json.loads(await communicator.receive_from(5)) == {"type": "pong"}
    # Single use: the same ticket again is refused, like any bad credential.
    again, connected, _ = await open_ws(path)
    assert connected
    assert await close_code(again) == 4401
    await communicator.disconnect()


@pytest.mark.parametrize("ticket", ["", "garbage", "x" * 5000])
async def test_an_unknown_ticket_closes_4401(user, make_session, ticket):
    session = await make_session_async(make_session, user)
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?ticket={ticket}"
    )
    assert connected
    assert await close_code(communicator) == 4401


async def test_a_ticket_does_not_open_another_users_session(
    user, other_user, make_session
):
    session = await make_session_async(make_session, other_user)
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?ticket={await buy_ticket(user)}"
    )
    assert connected
    assert await close_code(communicator) == 4404


async def test_a_ticket_bought_before_logout_everywhere_is_refused(user, make_session):
    session = await make_session_async(make_session, user)
    ticket = await buy_ticket(user)
    assert (await post(user, "/api/auth/logout", {"all": True})).status_code == 204
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/?ticket={ticket}"
    )
    assert connected
    assert await close_code(communicator) == 4401


async def test_the_session_cookie_still_opens_a_socket(user, make_session):
    from asgiref.sync import sync_to_async
    from django.conf import settings
    from django.test import Client

    session = await make_session_async(make_session, user)

    def cookie() -> str:
        client = Client()
        client.force_login(user)
        return client.cookies[settings.SESSION_COOKIE_NAME].value

    sessionid = await sync_to_async(cookie)()
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={sessionid}".encode())]
    communicator, connected, _ = await open_ws(
        f"/ws/sessions/{session.pk}/", headers=headers
    )
    assert connected
    await communicator.send_json_to({"type": "ping"})
    assert json.loads(await communicator.receive_from(5)) == {"type": "pong"}
    await communicator.disconnect()
