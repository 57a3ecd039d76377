"""The admin: every model's pages render for a superuser; agent edits bump the
version; tool configs are validated by the registry; listing moderation."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.core.files.base import ContentFile
from django.urls import reverse
from pydantic import BaseModel, Field
from pydantic_ai.toolsets import FunctionToolset

from agents.models import Agent, AgentVersion, Listing
from sessions_app.models import Artifact
from tests.factories import (
    AgentFactory,
    EventFactory,
    ExecutionFactory,
    ListingFactory,
    SessionFactory,
)
from tools.registry import register_tool, registry

pytestmark = pytest.mark.django_db

KIND = "admin_test_kind"


class KindConfig(BaseModel):
    depth: int = Field(default=1, ge=1)


@pytest.fixture(autouse=True)
def tool_kind():
    register_tool(KIND, category="test", description="d", config_schema=KindConfig)(
        lambda config, context: FunctionToolset([])
    )
    yield
    registry.unregister(KIND)


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def objects(admin_user):
    session = SessionFactory(user=admin_user)
    EventFactory(session=session)
    ExecutionFactory(session=session)
    ListingFactory(publisher=admin_user)
    artifact = Artifact(owner=admin_user, session=session, name="a.txt", size=1)
    artifact.file.save("x", ContentFile(b"a"), save=True)
    return session


MODELS = [model for model in admin.site._registry]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_changelist_add_and_change_pages_render(staff, objects, model):
    opts = model._meta
    base = f"admin:{opts.app_label}_{opts.model_name}"
    assert staff.get(reverse(f"{base}_changelist")).status_code == 200
    assert staff.get(reverse(f"{base}_changelist"), {"q": "a"}).status_code == 200
    model_admin = admin.site._registry[model]
    add = staff.get(reverse(f"{base}_add"))
    expected = 200 if model_admin.has_add_permission(add.wsgi_request) else 403
    assert add.status_code == expected
    instance = model._default_manager.first()
    if instance is not None:
        change = staff.get(reverse(f"{base}_change", args=[instance.pk]))
        assert change.status_code == 200


def agent_post(agent: Agent | None, owner, tools: list[dict], **fields) -> dict:
    data = {
        "owner": str(owner.pk),
        "name": "Admin agent",
        "description": "",
        "model": "test",
        "instructions": "Be brief.",
        "model_settings": "{}",
        "output_schema": "null",
        "usage_limits": "{}",
        "kind": "dynamic",
        "visibility": "private",
        "is_active": "on",
        "tools-TOTAL_FORMS": str(len(tools)),
        "tools-INITIAL_FORMS": "0",
        "versions-TOTAL_FORMS": "0",
        "versions-INITIAL_FORMS": str(agent.versions.count() if agent else 0),
        **fields,
    }
    for i, tool in enumerate(tools):
        data.update(
            {
                f"tools-{i}-tool": tool["tool"],
                f"tools-{i}-config": tool["config"],
                f"tools-{i}-enabled": "on",
                f"tools-{i}-approval_ttl_seconds": "1800",
                f"tools-{i}-position": str(i),
            }
        )
    return data


def test_adding_an_agent_in_the_admin_records_version_1(staff, admin_user):
    response = staff.post(
        reverse("admin:agents_agent_add"),
        agent_post(None, admin_user, [{"tool": KIND, "config": '{"depth": 2}'}]),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get(name="Admin agent")
    assert agent.version == 1
    assert agent.versions.get().config["tools"][0]["config"] == {"depth": 2}


def test_a_config_edit_in_the_admin_bumps_the_version(staff, admin_user):
    agent = AgentFactory(owner=admin_user)
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    response = staff.post(url, agent_post(agent, admin_user, [], instructions="New"))
    assert response.status_code == 302, response.content.decode()[:2000]
    agent.refresh_from_db()
    assert agent.version == 2 and agent.instructions == "New"
    assert (
        AgentVersion.objects.get(agent=agent, version=2).config["instructions"] == "New"
    )
    staff.post(
        url, agent_post(agent, admin_user, [], instructions="New", name="Renamed")
    )
    agent.refresh_from_db()
    assert (agent.version, agent.name) == (2, "Renamed")


@pytest.mark.parametrize(
    "tool,config,message",
    [
        (KIND, '{"depth": 0}', "Invalid config"),
        (KIND, '"text"', "JSON object"),
        ("not_registered", "{}", "Select a valid choice"),
    ],
)
def test_admin_refuses_invalid_tool_config_with_a_form_error(
    staff, admin_user, tool, config, message
):
    response = staff.post(
        reverse("admin:agents_agent_add"),
        agent_post(None, admin_user, [{"tool": tool, "config": config}]),
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Agent.objects.exists()


def test_admin_refuses_invalid_model_settings(staff, admin_user):
    data = agent_post(None, admin_user, [], model_settings='{"temperature": 9}')
    response = staff.post(reverse("admin:agents_agent_add"), data)
    assert response.status_code == 200 and "temperature" in response.content.decode()


def test_listing_approve_and_unapprove_actions(staff, admin_user):
    listing = ListingFactory(publisher=admin_user, is_approved=False)
    url = reverse("admin:agents_listing_changelist")
    staff.post(url, {"action": "approve", "_selected_action": [str(listing.pk)]})
    assert Listing.objects.get(pk=listing.pk).is_approved
    staff.post(url, {"action": "unapprove", "_selected_action": [str(listing.pk)]})
    assert not Listing.objects.get(pk=listing.pk).is_approved


def test_the_admin_is_titled_agentry_with_its_icon(staff):
    html = staff.get(reverse("admin:index")).content.decode()
    assert "<title>Agents, sessions and the marketplace | Agentry admin</title>" in html
    assert "Agentry administration" in html
    assert 'rel="icon" href="/static/favicon.svg"' in html


def test_an_agents_webhooks_are_edited_in_the_admin_through_the_network_guard(
    staff, admin_user
):
    agent = AgentFactory(owner=admin_user)
    url = reverse("admin:agents_agent_change", args=[agent.pk])
    refused = staff.post(
        url, agent_post(agent, admin_user, [], webhooks='["http://127.0.0.1/hook"]')
    )
    assert refused.status_code == 200
    assert "not a public address (loopback)" in refused.content.decode()
    agent.refresh_from_db()
    assert agent.webhooks == []
    saved = staff.post(
        url, agent_post(agent, admin_user, [], webhooks='["https://example.com/h"]')
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    agent.refresh_from_db()
    assert agent.webhooks == ["https://example.com/h"]
