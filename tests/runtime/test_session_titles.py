"""A chat is named by its first message until its user renames it."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from rest_framework.test import APIClient

from sessions_app.models import Session
from sessions_app.titles import TITLE_LENGTH, title_from_message
from tests.plugins.runtime import access_token

pytestmark = pytest.mark.django_db(transaction=True)

QUICK = "[[tokens=3 delay=1]]"


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("  What is\n\tthe  weather? ", "What is the weather?"),
        ("", ""),
        ("x" * 100, "x" * (TITLE_LENGTH - 1) + "…"),
        (
            "Please summarise the quarterly report and list the three biggest risks",
            "Please summarise the quarterly report and list the three…",
        ),
    ],
)
def test_a_message_gives_a_one_line_trimmed_title(content, title):
    assert title_from_message(content) == title
    assert len(title_from_message(content)) <= TITLE_LENGTH


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    return client


async def stored_title(session) -> str:
    return (await Session.objects.aget(pk=session.pk)).title


async def test_the_first_message_titles_an_untitled_chat_and_later_ones_do_not(
    fake_llm, user, new_session, ws_connect
):
    session = await new_session()
    assert await stored_title(session) == ""
    ws = await ws_connect(user, session)
    await ws.turn(f"{QUICK} Plan   a trip\nto Lisbon in May")
    assert await stored_title(session) == f"{QUICK} Plan a trip to Lisbon in May"
    await ws.turn(f"{QUICK} and book the hotel")
    assert await stored_title(session) == f"{QUICK} Plan a trip to Lisbon in May"
    await ws.close()


async def test_a_titled_chat_keeps_its_title(fake_llm, user, new_session, ws_connect):
    session = await new_session(title="Lisbon")
    ws = await ws_connect(user, session)
    await ws.turn(f"{QUICK} Plan a trip")
    assert await stored_title(session) == "Lisbon"
    await ws.close()


async def test_the_user_renames_a_chat_through_the_api(user, other_user, new_session):
    session = await new_session()
    path = f"/api/sessions/{session.pk}/"

    def patch(who, body):
        return api(who).patch(path, body, format="json")

    renamed = await sync_to_async(patch)(user, {"title": "  Trip to Lisbon  "})
    assert renamed.status_code == 200, renamed.content
    assert renamed.json()["title"] == "Trip to Lisbon"
    assert await stored_title(session) == "Trip to Lisbon"
    too_long = await sync_to_async(patch)(user, {"title": "x" * 201})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["details"]["title"]
    assert (
        await sync_to_async(patch)(other_user, {"title": "mine"})
    ).status_code == 404
    assert await stored_title(session) == "Trip to Lisbon"
