"""The websocket endpoint: authentication, origin, and frame handling."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.plugins.runtime import access_token, open_ws

pytestmark = pytest.mark.django_db(transaction=True)


async def close_code(path: str, headers=None) -> int | None:
    communicator, connected, _ = await open_ws(path, headers=headers)
    assert connected, "refusals accept first, so clients see the close code"
    output = await communicator.receive_output(5)
    assert output["type"] == "websocket.close"
    await communicator.wait()
    return output.get("code")


@pytest.mark.parametrize("token", [None, "garbage", "refresh"])
async def test_missing_or_bad_token_closes_4401(user, make_session, token):
    session = await make_session_async(make_session, user)
    if token == "refresh":
        from asgiref.sync import sync_to_async
        from rest_framework_simplejwt.tokens import RefreshToken

        token = str(await sync_to_async(RefreshToken.for_user)(user))
    query = "" if token is None else f"?token={token}"
    assert await close_code(f"/ws/sessions/{session.pk}/{query}") == 4401


async def test_other_users_session_closes_4404(user, other_user, make_session):
    session = await make_session_async(make_session, other_user)
    assert (
        await close_code(f"/ws/sessions/{session.pk}/?token={access_token(user)}")
        == 4404
    )


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid"])
async def test_unknown_session_closes_4404(user, session_id):
    assert (
        await close_code(f"/ws/sessions/{session_id}/?token={access_token(user)}")
        == 4404
    )


async def test_foreign_browser_origin_closes_4403(user, make_session):
    session = await make_session_async(make_session, user)
    path = f"/ws/sessions/{session.pk}/?token={access_token(user)}"
    assert (
        await close_code(path, headers=[(b"origin", b"https://evil.example")]) == 4403
    )


@pytest.mark.parametrize("origin", [None, "http://127.0.0.1:8000", "http://localhost"])
async def test_allowed_origin_or_none_connects_and_nothing_is_sent(
    user, make_session, ws_connect, origin
):
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session, origin=origin)
    assert await ws.nothing_more()
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}


@pytest.mark.parametrize(
    "raw,code",
    [
        ("not json", "invalid_frame"),
        ("[1, 2]", "invalid_frame"),
        ('{"no": "type"}', "invalid_frame"),
        ('{"type": "dance"}', "invalid_frame"),
        ('{"type": "resume", "after_sequence": "x"}', "invalid_frame"),
        ('{"type": "message", "content": ""}', "invalid_message"),
        ('{"type": "message", "content": 5}', "invalid_message"),
        ('{"type": "message", "content": "a\\u0000b"}', "invalid_message"),
        ('{"type": "message", "content": "hi", "attachments": "x"}', "invalid_frame"),
        (
            '{"type": "message", "content": "hi", "multitask": "sometimes"}',
            "invalid_multitask",
        ),
        (
            json.dumps(
                {"type": "message", "content": "hi", "attachments": [str(uuid.uuid4())]}
            ),
            "invalid_attachments",
        ),
    ],
)
async def test_bad_frame_answers_error_and_keeps_the_socket(
    user, make_session, ws_connect, raw, code
):
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)
    await ws.send(raw)
    frame = await ws.recv()
    assert frame["type"] == "error" and frame["error"]["code"] == code, frame
    await ws.send({"type": "ping"})
    assert await ws.recv() == {"type": "pong"}
    await ws.close()
    from sessions_app.models import Event

    assert not await Event.objects.filter(session=session).aexists(), (
        "a refused frame stores nothing"
    )


async def test_oversized_frame_is_refused(user, make_session, ws_connect, settings):
    settings.AGENTRY_MAX_WS_FRAME_BYTES = 1024
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "x" * 2000})
    frame = await ws.recv()
    assert frame["error"]["code"] == "message_too_large"


async def test_too_long_message_is_refused(user, make_session, ws_connect, settings):
    settings.AGENTRY_MAX_MESSAGE_CHARS = 10
    session = await make_session_async(make_session, user)
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "x" * 11})
    assert (await ws.recv())["error"]["code"] == "message_too_large"


async def make_session_async(make_session, user, **kwargs):
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_session)(user, **kwargs)
