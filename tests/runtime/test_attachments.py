"""Attachments reach the model in their own turn only; the stored history keeps
a short reference to the artifact, never its bytes; uploads count against a
per-user quota.

Files are uploaded through the real API, turns run over the websocket against
the fake OpenAI-compatible server, and what the model received is read from
the requests that server got.
"""

from __future__ import annotations

import base64
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from sessions_app.models import AgentExecution, Artifact
from tests.plugins.runtime import access_token

pytestmark = pytest.mark.django_db(transaction=True)

# Not a real PNG: the fake model takes any bytes. Large enough that base64 of
# it would dominate any stored row.
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1200  # about 300 KiB
IMAGE_B64 = base64.b64encode(IMAGE).decode()


def api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    return client


def upload(user, session, data: bytes, filename: str, content_type: str):
    return api(user).post(
        f"/api/sessions/{session.pk}/artifacts/",
        {"file": SimpleUploadedFile(filename, data, content_type=content_type)},
        format="multipart",
    )


def sent_to_model(request: dict) -> str:
    return json.dumps(request["messages"])


@pytest.fixture
async def session(user, make_session):
    return await sync_to_async(make_session)(user)


async def test_an_image_reaches_the_model_in_its_turn_and_is_stored_as_a_reference(
    fake_llm, user, session, ws_connect
):
    response = await sync_to_async(upload)(
        user, session, IMAGE, "photo.png", "image/png"
    )
    assert response.status_code == 201, response.content
    artifact_id = response.json()["id"]
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=3]] what is in it?", attachments=[artifact_id])
    assert frames[-1]["execution"]["status"] == "succeeded", frames[-1]

    first = sent_to_model(fake_llm.requests[-1])
    assert IMAGE_B64[:4000] in first, "the model got the image bytes in this turn"
    assert "[attachment photo.png" in first, "and a line naming the file"

    execution = await AgentExecution.objects.aget(pk=frames[-1]["execution"]["id"])
    stored = json.dumps(execution.messages)
    assert IMAGE_B64[:100] not in stored
    assert '"kind": "binary"' not in stored
    assert len(stored) < 10_000, f"{len(stored)} characters stored for one turn"
    assert artifact_id in stored, "the stored prompt names the artifact"

    await ws.turn("[[tokens=3]] and now?")
    later = sent_to_model(fake_llm.requests[-1])
    assert IMAGE_B64[:100] not in later, "later turns do not carry the bytes"
    assert "image_url" not in later
    assert "[attachment photo.png (version 1), image/png, " in later
    assert f"{len(IMAGE)} bytes]" in later


async def test_a_text_file_is_inline_in_its_turn_and_a_reference_later(
    fake_llm, user, session, ws_connect
):
    body = "line of the attached report\n" * 200
    response = await sync_to_async(upload)(
        user, session, body.encode(), "report.txt", "text/plain"
    )
    ws = await ws_connect(user, session)
    await ws.turn("[[tokens=3]] summarise", attachments=[response.json()["id"]])
    assert "line of the attached report" in sent_to_model(fake_llm.requests[-1])
    await ws.turn("[[tokens=3]] thanks")
    later = sent_to_model(fake_llm.requests[-1])
    assert "line of the attached report" not in later
    assert "[attachment report.txt (version 1), text/plain" in later


async def test_an_attachment_over_the_cap_is_not_read(
    fake_llm, user, session, ws_connect, settings
):
    response = await sync_to_async(upload)(
        user, session, IMAGE, "photo.png", "image/png"
    )
    artifact = await Artifact.objects.aget(pk=response.json()["id"])
    # Over the cap by its recorded size: the file is never opened, so even a
    # file gone from storage does not fail the turn.
    settings.MAX_UPLOAD_BYTES = len(IMAGE) - 1
    artifact.file.storage.delete(artifact.file.name)
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=3]] look", attachments=[str(artifact.pk)])
    assert frames[-1]["execution"]["status"] == "succeeded", frames[-1]
    sent = sent_to_model(fake_llm.requests[-1])
    assert "image_url" not in sent
    assert "too large" in sent


async def test_a_missing_file_is_named_not_a_failed_turn(
    fake_llm, user, session, ws_connect
):
    response = await sync_to_async(upload)(
        user, session, IMAGE, "photo.png", "image/png"
    )
    artifact = await Artifact.objects.aget(pk=response.json()["id"])
    artifact.file.storage.delete(artifact.file.name)
    ws = await ws_connect(user, session)
    frames = await ws.turn("[[tokens=3]] look", attachments=[str(artifact.pk)])
    assert frames[-1]["execution"]["status"] == "succeeded", frames[-1]
    assert "no longer stored" in sent_to_model(fake_llm.requests[-1])


async def test_an_image_a_tool_showed_the_model_is_not_kept_in_the_history(
    fake_llm, user, make_agent, make_session, ws_connect
):
    agent = await sync_to_async(make_agent)(user, tools=[{"tool": "artifacts"}])
    session = await sync_to_async(make_session)(user, agent=agent)
    await sync_to_async(upload)(user, session, IMAGE, "photo.png", "image/png")
    ws = await ws_connect(user, session)
    frames = await ws.turn('[[call view_artifact {"name": "photo.png"}]] look at it')
    assert frames[-1]["execution"]["status"] == "succeeded", frames[-1]
    assert IMAGE_B64[:4000] in sent_to_model(fake_llm.requests[-1])
    execution = await AgentExecution.objects.aget(pk=frames[-1]["execution"]["id"])
    stored = json.dumps(execution.messages)
    assert IMAGE_B64[:100] not in stored and len(stored) < 10_000
    assert f"image/png content returned by the tool, {len(IMAGE)} bytes" in stored


async def test_a_turn_resumed_after_approval_still_shows_its_own_attachment(
    fake_llm, user, make_agent, make_session, ws_connect
):
    agent = await sync_to_async(make_agent)(
        user,
        tools=[{"tool": "list_directory", "config": {}, "requires_approval": True}],
    )
    session = await sync_to_async(make_session)(user, agent=agent)
    response = await sync_to_async(upload)(
        user, session, IMAGE, "photo.png", "image/png"
    )
    ws = await ws_connect(user, session)
    await ws.send(
        {
            "type": "message",
            "content": '[[call list_directory {"path": "."}]] compare',
            "attachments": [response.json()["id"]],
        }
    )
    frames = await ws.until(
        lambda f: (
            f.get("type") == "execution"
            and f["execution"]["status"] == "awaiting_approval"
        )
    )
    execution_id = frames[-1]["execution"]["id"]
    paused = await AgentExecution.objects.aget(pk=execution_id)
    assert IMAGE_B64[:100] not in json.dumps(paused.messages)
    request = next(
        f["event"]
        for f in frames
        if f["type"] == "event" and f["event"]["actions"].get("approval_requests")
    )["actions"]["approval_requests"][0]
    await ws.send(
        {
            "type": "approve",
            "execution": execution_id,
            "decisions": {request["tool_call_id"]: True},
        }
    )
    done = await ws.until(
        lambda f: (
            f.get("type") == "execution"
            and f["execution"]["status"] in ("succeeded", "failed")
        )
    )
    assert done[-1]["execution"]["status"] == "succeeded", done[-1]
    assert IMAGE_B64[:4000] in sent_to_model(fake_llm.requests[-1]), (
        "the resumed run is the same turn: its model request shows the image"
    )
    finished = await AgentExecution.objects.aget(pk=execution_id)
    stored = json.dumps(finished.messages)
    assert IMAGE_B64[:100] not in stored and len(stored) < 10_000


def test_uploads_past_the_users_quota_are_refused(
    user, other_user, make_session, settings
):
    settings.AGENTRY_UPLOAD_QUOTA_MB = 1
    session = make_session(user)
    half = b"x" * 600_000
    assert (
        upload(user, session, half, "a.bin", "application/octet-stream").status_code
        == 201
    )
    refused = upload(user, session, half, "b.bin", "application/octet-stream")
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert Artifact.objects.filter(owner=user).count() == 1
    stored = [p for p in (settings.MEDIA_ROOT / "artifacts").rglob("*") if p.is_file()]
    assert len(stored) == 1, "the refused upload left no file behind"
    # The quota is per user.
    other_session = make_session(other_user)
    assert (
        upload(other_user, other_session, half, "c.bin", "text/plain").status_code
        == 201
    )
