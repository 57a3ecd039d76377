"""Agents: nested tools validated by the registry, versioning, filters, visibility."""

from __future__ import annotations

import pytest

from agents.models import Agent, AgentVersion
from tests.api.conftest import CLOCK_KIND, NOTES_KIND, assert_error
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

APPROVAL_DEFAULTS = {"approval_ttl_seconds": 1800, "allow_edit": False}
NOTES = {
    "tool": NOTES_KIND,
    "config": {"limit": 3},
    "enabled": True,
    "requires_approval": False,
    **APPROVAL_DEFAULTS,
}
CLOCK = {
    "tool": CLOCK_KIND,
    "config": {},
    "enabled": False,
    "requires_approval": True,
    **APPROVAL_DEFAULTS,
}


def create(client, **fields):
    body = {"name": "Helper", "model": "test", "instructions": "Be brief.", **fields}
    response = client.post("/api/agents/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_created_agent_is_dynamic_private_active_version_1_with_its_tools(client, user):
    data = create(client, tools=[NOTES, CLOCK], model_settings={"temperature": 0.2})
    assert (data["kind"], data["visibility"], data["is_active"], data["version"]) == (
        "dynamic",
        "private",
        True,
        1,
    )
    assert data["owner"] == str(user.pk) and data["slug"] == "helper"
    assert data["tools"] == [NOTES, CLOCK]
    version = AgentVersion.objects.get(agent_id=data["id"])
    assert version.version == 1 and version.config["tools"] == [NOTES, CLOCK]
    assert client.get(f"/api/agents/{data['id']}").json() == data


def test_tool_config_is_normalised_by_the_registry(client):
    data = create(client, tools=[{"tool": NOTES_KIND}])
    assert data["tools"] == [
        {
            "tool": NOTES_KIND,
            "config": {},
            "enabled": True,
            "requires_approval": False,
            **APPROVAL_DEFAULTS,
        }
    ]


def test_same_name_gets_a_distinct_slug_for_one_owner_and_the_same_for_another(
    client, other_client
):
    slugs = [create(c, name="Twin")["slug"] for c in (client, client, other_client)]
    assert slugs == ["twin", "twin-2", "twin"]


INVALID_BODIES = {
    "unknown_tool": {"tools": [{"tool": "no_such_kind", "config": {}}]},
    "config_wrong_type": {"tools": [{"tool": NOTES_KIND, "config": {"limit": "many"}}]},
    "config_out_of_range": {"tools": [{"tool": NOTES_KIND, "config": {"limit": 0}}]},
    "config_not_object": {"tools": [{"tool": NOTES_KIND, "config": [1]}]},
    "tools_not_list": {"tools": {"tool": NOTES_KIND}},
    "unknown_provider": {"model": "nosuchprovider:model"},
    "model_without_provider": {"model": "gpt 4"},
    "schema_not_object": {"output_schema": {"type": "string"}},
    "schema_invalid": {"output_schema": {"type": 12}},
    "temperature_too_high": {"model_settings": {"temperature": 5}},
    "temperature_text": {"model_settings": {"temperature": "hot"}},
    "max_tokens_negative": {"model_settings": {"max_tokens": -1}},
    "max_tokens_bool": {"model_settings": {"max_tokens": True}},
    "unknown_setting": {"model_settings": {"warmth": 1}},
    "settings_not_object": {"model_settings": [1]},
    "limit_zero": {"usage_limits": {"request_limit": 0}},
    "limit_float": {"usage_limits": {"total_tokens_limit": 1.5}},
    "unknown_limit": {"usage_limits": {"speed_limit": 3}},
    "unknown_kind": {"kind": "magic"},
    "unknown_visibility": {"visibility": "secret"},
    "name_missing": {"name": None},
    "name_too_long": {"name": "x" * 201},
}


@pytest.mark.parametrize("case", INVALID_BODIES)
def test_invalid_agent_config_is_a_400_validation_error(client, case):
    body = {"name": "Bad", "model": "test", **INVALID_BODIES[case]}
    body = {k: v for k, v in body.items() if v is not None}
    error = assert_error(client.post("/api/agents/", body, format="json"), 400)
    assert error["code"] == "validation_error" and error["details"]
    assert not Agent.objects.exists()


def test_valid_model_settings_usage_limits_and_output_schema_are_accepted(client):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    data = create(
        client,
        model_settings={
            "temperature": 1.5,
            "max_tokens": 200,
            "openai_reasoning_effort": "low",
        },
        usage_limits={"request_limit": 3, "tool_calls_limit": 5},
        output_schema=schema,
    )
    assert (
        data["output_schema"] == schema and data["usage_limits"]["request_limit"] == 3
    )


CONFIG_CHANGES = {
    "model": {"model": "openai-chat:other"},
    "instructions": {"instructions": "Be thorough."},
    "model_settings": {"model_settings": {"temperature": 0.7}},
    "output_schema": {"output_schema": {"type": "object"}},
    "usage_limits": {"usage_limits": {"request_limit": 3}},
    "kind": {"kind": "static"},
    "tools": {"tools": [CLOCK]},
    "tool_config": {"tools": [{**NOTES, "config": {"limit": 4}}]},
    "tool_enabled": {"tools": [{**NOTES, "enabled": False}]},
}


@pytest.mark.parametrize("change", CONFIG_CHANGES)
def test_config_change_bumps_version_and_records_it(client, change):
    agent = create(client, tools=[NOTES])
    response = client.patch(
        f"/api/agents/{agent['id']}/", CONFIG_CHANGES[change], format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 2
    snapshot = AgentVersion.objects.get(agent_id=agent["id"], version=2).config
    assert snapshot == Agent.objects.get(pk=agent["id"]).config_snapshot()


@pytest.mark.parametrize(
    "change",
    [
        {"name": "Renamed"},
        {"description": "Now described"},
        {"visibility": "public"},
        {"instructions": "Be brief."},
        {"tools": [NOTES]},
    ],
)
def test_name_description_visibility_or_unchanged_config_keep_the_version(
    client, change
):
    agent = create(client, tools=[NOTES])
    response = client.patch(f"/api/agents/{agent['id']}", change, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 1
    assert AgentVersion.objects.filter(agent_id=agent["id"]).count() == 1


def test_put_replaces_the_agent_and_its_tools(client):
    agent = create(client, tools=[NOTES])
    body = {"name": "Replaced", "model": "test", "instructions": "New.", "tools": []}
    data = client.put(f"/api/agents/{agent['id']}/", body, format="json").json()
    assert (data["name"], data["instructions"], data["tools"], data["version"]) == (
        "Replaced",
        "New.",
        [],
        2,
    )


def test_patch_without_tools_keeps_them(client):
    agent = create(client, tools=[NOTES])
    data = client.patch(
        f"/api/agents/{agent['id']}/", {"name": "X"}, format="json"
    ).json()
    assert data["tools"] == [NOTES]


def test_versions_list_and_restore_makes_a_new_version_with_the_old_config(client):
    agent = create(client, tools=[NOTES], instructions="first")
    client.patch(
        f"/api/agents/{agent['id']}/",
        {"instructions": "second", "tools": []},
        format="json",
    )
    versions = client.get(f"/api/agents/{agent['id']}/versions/").json()["results"]
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["config"]["instructions"] == "first"
    response = client.post(f"/api/agents/{agent['id']}/versions/1/restore/")
    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["version"], data["instructions"], data["tools"]) == (
        3,
        "first",
        [NOTES],
    )
    assert AgentVersion.objects.get(agent_id=agent["id"], version=3).notes


def test_restoring_a_missing_version_is_404(client, agent):
    assert_error(client.post(f"/api/agents/{agent.pk}/versions/99/restore"), 404)


def test_delete_agent(client, agent):
    assert client.delete(f"/api/agents/{agent.pk}/").status_code == 204
    assert_error(client.get(f"/api/agents/{agent.pk}/"), 404)


def test_list_shows_own_agents_and_public_filter_shows_every_public_agent(
    client, user, other_user
):
    mine = AgentFactory(owner=user)
    mine_public = AgentFactory(owner=user, visibility="public")
    theirs_public = AgentFactory(owner=other_user, visibility="public")
    AgentFactory(owner=other_user)
    AgentFactory(owner=other_user, visibility="public", is_active=False)

    def ids(**params):
        return {a["id"] for a in client.get("/api/agents/", params).json()["results"]}

    assert ids() == {str(mine.pk), str(mine_public.pk)}
    assert ids(visibility="public") == {str(mine_public.pk), str(theirs_public.pk)}
    assert ids(visibility="private") == {str(mine.pk)}


@pytest.mark.parametrize(
    "params,listed",
    [
        ({"search": "findable"}, True),
        ({"search": "nothing-like-it"}, False),
        ({"kind": "dynamic"}, True),
        ({"kind": "workflow"}, False),
        ({"visibility": "private"}, True),
        ({"visibility": "public"}, False),
    ],
)
def test_agent_list_filters(client, user, params, listed):
    agent = AgentFactory(owner=user, name="The findable one")
    got = {a["id"] for a in client.get("/api/agents/", params).json()["results"]}
    assert (str(agent.pk) in got) is listed


@pytest.mark.parametrize("params", [{"kind": "magic"}, {"visibility": "x"}])
def test_invalid_filter_values_are_400(client, params):
    assert_error(client.get("/api/agents/", params), 400)


def test_another_users_public_agent_is_readable_but_not_writable(client, other_user):
    theirs = AgentFactory(owner=other_user, visibility="public")
    assert client.get(f"/api/agents/{theirs.pk}/").status_code == 200
    # The version history is the owner's only (DESIGN.md section 9).
    assert_error(client.get(f"/api/agents/{theirs.pk}/versions/"), 404)
    assert_error(
        client.patch(f"/api/agents/{theirs.pk}/", {"name": "x"}, format="json"), 403
    )
    assert_error(
        client.put(f"/api/agents/{theirs.pk}/", {"name": "x"}, format="json"), 403
    )
    assert_error(client.delete(f"/api/agents/{theirs.pk}/"), 403)
    assert_error(client.post(f"/api/agents/{theirs.pk}/versions/1/restore/"), 404)
    theirs.refresh_from_db()
    assert theirs.name != "x"


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "nul\\u0000name", "model": "test"}',
        '{"name": "ok", "instructions": "lone \\ud800 surrogate"}',
        '{"name": "ok", "model_settings": {"extra_body": {"k": "\\u0000"}}}',
        '{"name": "ok", "tools": [{"tool": "test_notes", "config": {"root": "\\udfff"}}]}',
    ],
)
def test_nul_or_lone_surrogates_anywhere_in_the_body_are_400(client, raw):
    assert_error(client.post("/api/agents/", raw, content_type="application/json"), 400)
    assert not Agent.objects.exists()


def test_nul_in_a_query_string_is_400(client):
    assert_error(client.get("/api/agents/?search=a%00b"), 400)


def test_tool_registry_lists_registered_kinds_with_their_schemas(client):
    kinds = {k["name"]: k for k in client.get("/api/tools/").json()}
    assert kinds[NOTES_KIND]["category"] == "test"
    assert kinds[NOTES_KIND]["description"] == "Notes."
    assert (
        kinds[NOTES_KIND]["config_schema"]["properties"]["limit"]["type"] == "integer"
    )
    assert CLOCK_KIND in kinds


def test_patch_with_a_tool_entry_without_its_name_is_a_400(client, agent):
    response = client.patch(
        f"/api/agents/{agent.pk}/", {"tools": [{"config": {}}]}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "validation_error"


# ---------------------------------------------------------------- webhooks


def test_an_agents_webhooks_are_set_read_and_replaced_over_the_api(client):
    data = create(client, webhooks=["https://hooks.example.com/a"])
    assert data["webhooks"] == ["https://hooks.example.com/a"]
    patched = client.patch(
        f"/api/agents/{data['id']}",
        {"webhooks": ["https://hooks.example.com/b", "http://93.184.215.14/c"]},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["webhooks"] == [
        "https://hooks.example.com/b",
        "http://93.184.215.14/c",
    ]
    assert patched.json()["version"] == data["version"], "not a config change"
    assert Agent.objects.get(pk=data["id"]).webhooks == patched.json()["webhooks"]
    cleared = client.patch(f"/api/agents/{data['id']}", {"webhooks": []}, format="json")
    assert cleared.json()["webhooks"] == []


@pytest.mark.parametrize(
    "webhooks,message",
    [
        ("https://hooks.example.com/a", "list"),
        ([42], "string"),
        (["ftp://hooks.example.com/a"], "http"),
        (["https://user:pw@hooks.example.com/a"], "credentials"),
        (["http://127.0.0.1:8000/hook"], "not a public address (loopback)"),
        (["http://10.1.2.3/hook"], "not a public address (private)"),
        (["http://[::ffff:169.254.169.254]/hook"], "not a public address"),
        (["https://hooks.example.com/a"] * 2, "twice"),
        ([f"https://hooks.example.com/{i}" for i in range(11)], "10"),
        (["https://hooks.example.com/" + "a" * 2000], "2000"),
    ],
)
def test_bad_webhooks_are_a_400_naming_the_field_and_change_nothing(
    client, webhooks, message
):
    data = create(client)
    response = client.patch(
        f"/api/agents/{data['id']}", {"webhooks": webhooks}, format="json"
    )
    assert response.status_code == 400, response.content
    errors = response.json()["error"]["details"]["webhooks"]
    assert message in str(errors), errors
    assert Agent.objects.get(pk=data["id"]).webhooks == []


def test_private_webhook_addresses_are_allowed_where_the_guard_allows_them(
    client, settings
):
    settings.AGENTRY_ALLOW_PRIVATE_URLS = True
    data = create(client, webhooks=["http://127.0.0.1:8000/hook"])
    assert data["webhooks"] == ["http://127.0.0.1:8000/hook"]


def test_the_schema_documents_an_agents_webhooks():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    field = schema["components"]["schemas"]["Agent"]["properties"]["webhooks"]
    assert field["type"] == "array" and field["maxItems"] == 10
    assert field["items"]["type"] == "string"
    assert "network guard" in field["description"]
