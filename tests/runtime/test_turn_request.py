"""A turn request is validated once, as it is built, whoever builds it; the
user's stored message carries the id its client gave it."""

from __future__ import annotations

import uuid

import pytest

from sessions_app.models import Event
from sessions_app.runner import TurnRejected, TurnRequest


@pytest.mark.parametrize(
    "fields,code",
    [
        ({"content": ""}, "invalid_message"),
        ({"content": 5}, "invalid_message"),
        ({"content": "a\u0000b"}, "invalid_message"),
        ({"content": "hi", "attachments": "x"}, "invalid_frame"),
        ({"content": "hi", "client_message_id": 7}, "invalid_frame"),
        ({"content": "hi", "client_message_id": "m" * 201}, "invalid_message"),
        ({"content": "hi", "multitask": "sometimes"}, "invalid_multitask"),
        (
            {"content": "hi", "attachments": [str(uuid.uuid4()) for _ in range(21)]},
            "invalid_attachments",
        ),
    ],
)
def test_an_invalid_request_is_refused_as_it_is_built(fields, code):
    with pytest.raises(TurnRejected) as refused:
        TurnRequest(session_id="s", user_id=1, **fields)
    assert refused.value.code == code


def test_a_too_long_request_is_refused_with_413(settings):
    settings.AGENTRY_MAX_MESSAGE_CHARS = 10
    with pytest.raises(TurnRejected) as refused:
        TurnRequest(session_id="s", user_id=1, content="x" * 11)
    assert (refused.value.code, refused.value.status) == ("message_too_large", 413)


def test_a_message_is_read_with_its_defaults():
    request = TurnRequest.from_message(
        {"content": "hi", "attachments": None, "client_message_id": None},
        session_id="s",
        user_id=1,
    )
    assert (request.attachments, request.client_message_id, request.multitask) == (
        (),
        "",
        None,
    )


@pytest.mark.django_db(transaction=True)
async def test_an_oversized_frame_is_refused_naming_the_limit(
    user, new_session, ws_connect, settings
):
    settings.AGENTRY_MAX_WS_FRAME_BYTES = 1024
    session = await new_session()
    ws = await ws_connect(user, session)
    await ws.send({"type": "message", "content": "x" * 2000})
    error = (await ws.recv())["error"]
    assert error["code"] == "message_too_large"
    assert "1024 bytes" in error["message"]


@pytest.mark.django_db(transaction=True)
async def test_the_user_event_carries_its_client_message_id(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=2]] hello", client_message_id="m-7")
    assert frames[0]["event"]["metadata"]["client_message_id"] == "m-7"
    stored = await Event.objects.aget(session=session, author="user")
    assert stored.metadata["client_message_id"] == "m-7"
    await ws.turn("[[tokens=2]] no id")
    plain = await (
        Event.objects.filter(session=session, author="user")
        .order_by("sequence_number")
        .alast()
    )
    assert "client_message_id" not in plain.metadata
