"""An agent's tools are read once per version in a process, and a tool row
written without a new version (a shell, a test) is still seen at once."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import AgentTool
from agents.selectors import agent_config_at

pytestmark = pytest.mark.django_db


def _tool_names(agent) -> list[str]:
    agent.refresh_from_db()
    config = agent_config_at(agent=agent, version=agent.version)
    return [entry["tool"] for entry in config["tools"]]


def test_tools_are_read_once_per_version_and_a_direct_write_is_seen(make_agent, user):
    agent = make_agent(user)
    before = _tool_names(agent)
    with CaptureQueriesContext(connection) as again:
        assert _tool_names(agent) == before
    assert not any("agents_agenttool" in q["sql"] for q in again.captured_queries)

    AgentTool.objects.create(agent=agent, tool="read_file", position=99)
    assert _tool_names(agent) == [*before, "read_file"]
    AgentTool.objects.filter(agent=agent, tool="read_file").delete()
    assert _tool_names(agent) == before
