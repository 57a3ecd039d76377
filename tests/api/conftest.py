"""Fixtures of the REST API tests: tool kinds of their own, agents, sessions."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field
from pydantic_ai.toolsets import FunctionToolset

from tests.factories import AgentFactory, SessionFactory
from tools.registry import ToolContext, register_tool, registry

NOTES_KIND = "test_notes"
CLOCK_KIND = "test_clock"


class NotesConfig(BaseModel):
    root: str = Field(default=".", description="Folder of the notes.")
    limit: int = Field(default=10, ge=1, le=100)


class ClockConfig(BaseModel):
    pass


@pytest.fixture(autouse=True)
def tool_kinds():
    """Two small tool kinds, so these tests do not depend on the built-in ones."""

    def build(config: BaseModel, context: ToolContext) -> FunctionToolset:
        return FunctionToolset([])

    register_tool(
        NOTES_KIND, category="test", description="Notes.", config_schema=NotesConfig
    )(build)
    register_tool(
        CLOCK_KIND, category="test", description="Clock.", config_schema=ClockConfig
    )(build)
    yield [NOTES_KIND, CLOCK_KIND]
    registry.unregister(NOTES_KIND)
    registry.unregister(CLOCK_KIND)


@pytest.fixture
def client(auth_client, user):
    """The API as `user`."""
    return auth_client(user)


@pytest.fixture
def other_client(auth_client, other_user):
    return auth_client(other_user)


@pytest.fixture
def agent(user):
    return AgentFactory(owner=user)


@pytest.fixture
def session(user, agent):
    return SessionFactory(user=user, agent=agent)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:800]
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["message"], error
    assert code is None or error["code"] == code, error
    return error
