"""The artifacts kind shows a session's own files to the model, and nothing else."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from asgiref.sync import sync_to_async
from django.core.files.base import ContentFile
from django.db import connections
from pydantic_ai import (
    Agent,
    BinaryContent,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolFailed,
)
from pydantic_ai.messages import ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agents.models import Agent as AgentRow
from sessions_app.models import Artifact, Session
from tests.factories import UserFactory
from tools.registry import ToolContext, registry, toolset_for

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32


def make_session(user):
    agent = AgentRow.objects.create(
        owner=user, name="a", slug=f"a-{uuid.uuid4().hex[:6]}"
    )
    return Session.objects.create(agent=agent, user=user)


def add_artifact(session, name, data, content_type, version=1):
    artifact = Artifact(
        session=session,
        owner=session.user,
        name=name,
        version=version,
        content_type=content_type,
        size=len(data),
    )
    artifact.file.save(name, ContentFile(data), save=False)
    artifact.save()
    return artifact


@pytest.fixture(autouse=True)
async def _close_connections_of_orm_threads():
    """The async ORM queries from a worker thread; its connection must not outlive the test."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def scene(db):
    owner, stranger = UserFactory(), UserFactory()
    session, other = make_session(owner), make_session(stranger)
    add_artifact(session, "notes.txt", b"first draft\n", "text/plain", version=1)
    add_artifact(session, "notes.txt", b"second draft\n", "text/plain", version=2)
    add_artifact(session, "chart.png", PNG, "image/png")
    add_artifact(session, "blob.bin", b"\x00\x01\x02", "application/octet-stream")
    add_artifact(other, "theirs.txt", b"not yours\n", "text/plain")
    return SimpleNamespace(owner=owner, session=session, other=other)


def artifact_tools(session, user_id=None, **config):
    kind = registry.get("artifacts")
    context = ToolContext(
        repo_root=Path("."),
        user_id=session.user_id if user_id is None else user_id,
        session_id=session.pk,
    )
    tools = kind.build(kind.config_schema.model_validate(config), context).tools
    return tools["list_artifacts"].function, tools["view_artifact"].function


@pytest.mark.django_db(transaction=True)
async def test_lists_and_shows_only_this_sessions_artifacts(scene):
    list_artifacts, view_artifact = artifact_tools(scene.session)
    listed = await list_artifacts()
    assert [(a["name"], a["version"]) for a in listed["artifacts"]] == [
        ("blob.bin", 1),
        ("chart.png", 1),
        ("notes.txt", 2),
        ("notes.txt", 1),
    ]
    assert (await view_artifact("notes.txt"))["content"] == "second draft\n"
    assert (await view_artifact("notes.txt", version=1))["content"] == "first draft\n"
    image = await view_artifact("chart.png")
    assert isinstance(image, BinaryContent)
    assert (image.media_type, image.data) == ("image/png", PNG)
    with pytest.raises(ToolFailed, match="binary"):
        await view_artifact("blob.bin")
    with pytest.raises(ToolFailed, match=r"No artifact 'theirs\.txt'"):
        await view_artifact("theirs.txt")


@pytest.mark.django_db(transaction=True)
async def test_another_user_sees_nothing_of_a_session(scene):
    list_artifacts, view_artifact = artifact_tools(
        scene.session, user_id=scene.other.user_id
    )
    assert (await list_artifacts())["artifacts"] == []
    with pytest.raises(ToolFailed, match="No artifact"):
        await view_artifact("notes.txt")


@pytest.mark.django_db(transaction=True)
async def test_caps_on_text_images_and_listing(scene):
    list_artifacts, view_artifact = artifact_tools(
        scene.session, max_text_bytes=6, max_image_bytes=10, max_listed=2
    )
    cut = await view_artifact("notes.txt")
    assert (cut["content"], cut["truncated"]) == ("second", True)
    with pytest.raises(ToolFailed, match="larger than 10 bytes"):
        await view_artifact("chart.png")
    listed = await list_artifacts()
    assert len(listed["artifacts"]) == 2 and listed["truncated"] is True


@pytest.mark.django_db(transaction=True)
async def test_the_model_receives_the_image_through_a_real_run(scene):
    toolset = await sync_to_async(toolset_for)(
        [{"tool": "artifacts"}],
        ToolContext(
            repo_root=Path("."), user_id=scene.owner.pk, session_id=scene.session.pk
        ),
    )
    received = []

    def model(messages, info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(
                parts=[ToolCallPart("view_artifact", {"name": "chart.png"})]
            )
        received.extend(messages[-1].parts)
        return ModelResponse(parts=[TextPart("a chart")])

    result = await Agent(FunctionModel(model), toolsets=[toolset]).run("what is it?")
    assert result.output == "a chart"
    returned = [p for p in received if isinstance(p, ToolReturnPart)]
    assert returned[0].outcome == "success"
    assert any(
        isinstance(item, BinaryContent) and item.data == PNG
        for part in received
        for item in (part.content if isinstance(part.content, list) else [part.content])
    )
