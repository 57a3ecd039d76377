"""Delegate tools and workflows through the API: what a save refuses (hidden
targets, cycles, depth, malformed steps), the tool listing, and a turn's tree
read back with `?root=`."""

from __future__ import annotations

import pytest

from sessions_app.models import AgentExecution
from tests.api.conftest import assert_error
from tests.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db


def delegate(agent_id, name: str = "ask_helper") -> dict:
    return {"tool": "delegate", "config": {"agent": str(agent_id), "name": name}}


def create(client, **fields):
    body = {"name": "Agent", "model": "test", **fields}
    return client.post("/api/agents/", body, format="json")


def test_the_tool_listing_offers_delegate_with_its_schema(client):
    kinds = {k["name"]: k for k in client.get("/api/tools/").json()}
    delegate_kind = kinds["delegate"]
    assert delegate_kind["category"] == "agents"
    assert set(delegate_kind["config_schema"]["required"]) == {"agent", "name"}


def test_a_target_the_owner_cannot_see_is_refused(client, user, other_user):
    private = AgentFactory(owner=other_user, visibility="private")
    public = AgentFactory(owner=other_user, visibility="public")
    assert create(client, tools=[delegate(public.pk)]).status_code == 201
    assert_error(create(client, tools=[delegate(private.pk)]), 400)
    flow = {"steps": [{"name": "a", "agent": str(private.pk)}]}
    assert_error(create(client, kind="workflow", workflow=flow), 400)


def test_cycles_and_depth_are_refused_on_save(client, settings):
    leaf = create(client).json()
    middle = create(client, tools=[delegate(leaf["id"])]).json()
    assert_error(
        client.patch(
            f"/api/agents/{leaf['id']}/",
            {"tools": [delegate(middle["id"])]},
            format="json",
        ),
        400,
    )
    itself = {"tools": [delegate(leaf["id"])]}
    assert_error(client.patch(f"/api/agents/{leaf['id']}/", itself, format="json"), 400)
    settings.AGENTRY_MAX_DELEGATION_DEPTH = 1
    assert_error(create(client, tools=[delegate(middle["id"])]), 400)


@pytest.mark.parametrize(
    "workflow",
    [
        None,
        {"steps": []},
        {"steps": [{"name": "x", "agent": "not-an-id"}]},
        {"steps": [{"agent": "00000000-0000-4000-8000-000000000000"}]},
        {
            "steps": [
                {
                    "name": "x",
                    "agent": "00000000-0000-4000-8000-000000000000",
                    "extra": 1,
                }
            ]
        },
        {"stages": []},
    ],
)
def test_malformed_workflows_are_refused(client, workflow):
    assert_error(create(client, kind="workflow", workflow=workflow), 400)


def test_too_many_steps_are_refused_and_prompts_default_to_previous(client):
    step = create(client).json()["id"]
    many = {"steps": [{"name": f"s{i}", "agent": step} for i in range(21)]}
    assert_error(create(client, kind="workflow", workflow=many), 400)
    made = create(
        client, kind="workflow", workflow={"steps": [{"name": "a", "agent": step}]}
    )
    assert made.status_code == 201, made.content
    assert made.json()["workflow"]["steps"][0]["prompt"] == "{previous}"


def test_executions_list_a_turns_tree_by_root(client, user):
    session = SessionFactory(user=user)
    root = AgentExecution.objects.create(
        session=session, agent=session.agent, user=user
    )
    root.root = root
    root.save()
    child = AgentExecution.objects.create(
        session=session, agent=session.agent, user=user, parent=root, root=root, depth=1
    )
    AgentExecution.objects.create(session=session, agent=session.agent, user=user)
    found = client.get(f"/api/executions/?root={root.pk}").json()["results"]
    assert {x["id"] for x in found} == {str(root.pk), str(child.pk)}
    shown = {x["id"]: x for x in found}[str(child.pk)]
    assert (shown["parent"], shown["root"], shown["depth"]) == (
        str(root.pk),
        str(root.pk),
        1,
    )
