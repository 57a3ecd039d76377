"""Scopes as the runner applies them: the session's user decides, not the owner.

Turns go through the real REST endpoint and runner against the fake model
server, so the ToolContext is the one a real turn gets.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from tests.plugins.runtime import access_token

pytestmark = pytest.mark.django_db(transaction=True)

WRITE = '[[call write_file {"path": "mine.txt", "content": "written"}]] save it'


async def send(user, session, content: str) -> dict:
    response = await AsyncClient().post(
        f"/api/sessions/{session.pk}/messages/",
        {"content": content},
        content_type="application/json",
        headers={"Authorization": f"Bearer {access_token(user)}"},
    )
    assert response.status_code == 200, response.content
    return response.json()


def tool_results(body: dict) -> list[dict]:
    return [e for e in body["events"] if e["kind"] == "tool_result"]


async def test_a_public_agents_workspace_is_the_session_users(
    fake_llm, user, other_user, make_agent, make_session, settings
):
    agent = await sync_to_async(make_agent)(
        user,
        visibility="public",
        tools=[{"tool": "write_file", "config": {"scope": "workspace"}}],
    )
    session = await sync_to_async(make_session)(other_user, agent=agent)
    body = await send(other_user, session, WRITE)
    assert body["execution"]["status"] == "succeeded"
    [result] = tool_results(body)
    assert result["metadata"]["is_error"] is False
    workspaces = settings.AGENTRY_WORKSPACES
    assert (workspaces / str(other_user.pk) / "mine.txt").read_text() == "written"
    assert not (workspaces / str(user.pk)).exists()
    assert not (settings.REPO_ROOT / "mine.txt").exists()


@pytest.mark.parametrize(("role", "written"), [("user", False), ("developer", True)])
async def test_repo_scope_writes_follow_the_session_users_role(
    fake_llm, user, make_agent, make_session, settings, role, written
):
    user.role = role
    await user.asave(update_fields=["role"])
    agent = await sync_to_async(make_agent)(
        user, tools=[{"tool": "write_file", "config": {}}]
    )
    session = await sync_to_async(make_session)(user, agent=agent)
    body = await send(user, session, WRITE)
    [result] = tool_results(body)
    assert result["metadata"]["is_error"] is not written
    assert (settings.REPO_ROOT / "mine.txt").exists() is written
    if not written:
        assert "developer or admin" in result["content"]
