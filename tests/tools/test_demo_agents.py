"""The seeded demo agents' file requests work for the demo user (role `user`).

`make run` seeds them for that user; every file request the offline model
understands goes through the real REST endpoint and runner, so the scopes and
role checks a real turn meets are the ones tested.
"""

from __future__ import annotations

import io

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from agents.models import Agent
from sessions_app.models import Session
from tests.tools.test_scopes_in_turns import send, tool_results

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("request_text", "tool_name", "quoted"),
    [
        ("list the files", "list_directory", "NOTES.md"),
        ("read NOTES.md", "read_file", "Remember the milk."),
        ("search for milk", "grep_search", "Remember the milk."),
        ("find *.md", "find_files", "NOTES.md"),
    ],
)
async def test_seeded_file_requests_work_for_a_plain_user(
    user, settings, request_text, tool_name, quoted
):
    assert user.role == "user"
    (settings.REPO_ROOT / "NOTES.md").write_text("Remember the milk.\n")
    await sync_to_async(call_command)(
        "seed_agents", "--owner", user.username, stdout=io.StringIO()
    )
    agent = await Agent.objects.aget(owner=user, slug="repository-assistant")
    session = await Session.objects.acreate(user=user, agent=agent)
    body = await send(user, session, request_text)
    assert body["execution"]["status"] == "succeeded"
    [result] = tool_results(body)
    assert result["metadata"]["is_error"] is False, result["content"]
    assert result["metadata"].get("tool_name", tool_name) == tool_name
    assert quoted in body["execution"]["output"]
