"""Agent definitions loaded by `manage.py seed_agents` keep each tool entry's
approval settings: how long an approval waits, and whether its arguments may
be edited."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import CommandError, call_command

from agents.models import Agent

pytestmark = pytest.mark.django_db


def seed_file(tmp_path, user, tool: dict) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump({"agents": [{"name": "Careful", "tools": [tool]}]}))
    call_command(
        "seed_agents", str(path), "--owner", user.username, stdout=io.StringIO()
    )


def test_a_tool_entrys_approval_ttl_and_edit_permission_are_kept(tmp_path, user):
    seed_file(
        tmp_path,
        user,
        {
            "tool": "write_file",
            "requires_approval": True,
            "approval_ttl_seconds": 60,
            "allow_edit": True,
        },
    )
    tool = Agent.objects.get(owner=user, slug="careful").tools.get()
    assert (tool.requires_approval, tool.approval_ttl_seconds, tool.allow_edit) == (
        True,
        60,
        True,
    )


def test_missing_approval_settings_take_the_defaults(tmp_path, user):
    seed_file(tmp_path, user, {"tool": "write_file", "requires_approval": True})
    tool = Agent.objects.get(owner=user, slug="careful").tools.get()
    assert (tool.approval_ttl_seconds, tool.allow_edit) == (1800, False)


@pytest.mark.parametrize("ttl", [0, 604_801, "soon", True])
def test_an_approval_ttl_out_of_range_is_refused(tmp_path, user, ttl):
    with pytest.raises(CommandError, match="approval_ttl_seconds"):
        seed_file(tmp_path, user, {"tool": "write_file", "approval_ttl_seconds": ttl})
