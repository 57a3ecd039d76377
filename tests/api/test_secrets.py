"""Secrets: the store's API, references in tool headers, and what others see.

A secret's value goes in once (POST /api/secrets/) and never comes out of any
API; tool configs name it as `{"secret": name}`; another user reading a public
agent or a listing sees every header value masked and no secret names.
"""

from __future__ import annotations

import json

import pytest

from accounts import secrets
from accounts.models import Secret
from agents.models import Agent, AgentTool, AgentVersion, Listing
from tests.api.conftest import assert_error
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

API_KEY = "sk-live-0123456789abcdef"


def http_tool(headers: dict) -> dict:
    return {
        "tool": "http_endpoint",
        "config": {
            "name": "weather",
            "description": "Weather for a city.",
            "url": "https://api.example.com/weather",
            "headers": headers,
        },
    }


def mcp_tool(headers: dict) -> dict:
    return {
        "tool": "mcp_server",
        "config": {"url": "https://mcp.example.com/mcp", "headers": headers},
    }


def create_agent(client, **fields) -> dict:
    body = {"name": "Weather bot", "model": "test", **fields}
    response = client.post("/api/agents/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def add_secret(client, name: str, value: str = API_KEY):
    return client.post("/api/secrets/", {"name": name, "value": value}, format="json")


# ---- the store's API -------------------------------------------------------------


def test_created_secret_answers_its_metadata_and_never_its_value(client, user):
    response = add_secret(client, "weather-key")
    assert response.status_code == 201, response.content
    data = response.json()
    assert set(data) == {"id", "name", "created_at", "last_used_at"}
    assert (data["name"], data["last_used_at"]) == ("weather-key", None)
    listed = client.get("/api/secrets/")
    assert [s["name"] for s in listed.json()["results"]] == ["weather-key"]
    assert API_KEY not in listed.content.decode()
    assert API_KEY not in client.get(f"/api/secrets/{data['id']}/").content.decode()
    stored = Secret.objects.get(pk=data["id"])
    assert stored.owner == user and API_KEY not in stored.ciphertext
    assert secrets.decrypt(stored.ciphertext) == API_KEY


def test_secrets_are_private_to_their_owner(client, other_client):
    mine = add_secret(client, "weather-key").json()
    assert other_client.get("/api/secrets/").json()["results"] == []
    assert_error(other_client.get(f"/api/secrets/{mine['id']}/"), 404)
    assert_error(other_client.delete(f"/api/secrets/{mine['id']}/"), 404)
    assert Secret.objects.filter(pk=mine["id"]).exists()
    assert client.delete(f"/api/secrets/{mine['id']}").status_code == 204
    assert not Secret.objects.filter(pk=mine["id"]).exists()


def test_the_same_name_twice_is_a_400_but_another_user_may_use_it(client, other_client):
    assert add_secret(client, "weather-key").status_code == 201
    error = assert_error(add_secret(client, "weather-key", "other"), 400)
    assert "already" in json.dumps(error["details"])
    assert add_secret(other_client, "weather-key").status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "value": "v"},
        {"name": "has space", "value": "v"},
        {"name": "-leading-dash", "value": "v"},
        {"name": "x" * 101, "value": "v"},
        {"name": "ok"},
        {"name": "ok", "value": ""},
        {"name": "ok", "value": "two\r\nlines"},
        {"name": "ok", "value": 5},
        {"name": "ok", "value": "x" * 10_001},
    ],
)
def test_bad_secret_bodies_are_400(client, body):
    assert_error(client.post("/api/secrets/", body, format="json"), 400)
    assert not Secret.objects.exists()


# ---- references in tool headers --------------------------------------------------


@pytest.mark.parametrize("make_tool", [http_tool, mcp_tool])
def test_a_header_may_name_an_own_secret(client, make_tool):
    add_secret(client, "weather-key")
    tool = make_tool({"Authorization": {"secret": "weather-key"}})
    agent = create_agent(client, tools=[tool])
    assert agent["tools"][0]["config"]["headers"] == {
        "Authorization": {"secret": "weather-key"}
    }


@pytest.mark.parametrize("make_tool", [http_tool, mcp_tool])
def test_naming_a_secret_you_do_not_own_is_a_400(client, other_client, make_tool):
    add_secret(other_client, "their-key")
    for name in ("their-key", "missing"):
        body = {"name": "x", "tools": [make_tool({"X-Api": {"secret": name}})]}
        error = assert_error(client.post("/api/agents/", body, format="json"), 400)
        assert name in json.dumps(error["details"])
    assert not Agent.objects.filter(name="x").exists()


def test_a_bad_reference_is_a_400(client):
    for value in ({"secret": ""}, {"secret": "ok", "more": 1}, {"name": "x"}, 5):
        body = {"name": "x", "tools": [http_tool({"X-Api": value})]}
        assert_error(client.post("/api/agents/", body, format="json"), 400)


@pytest.mark.parametrize(
    "header", ["Authorization", "cookie", "X-API-Key", "X-Auth-Token", "Client-Secret"]
)
def test_plain_credential_headers_become_secrets_of_the_owner(client, user, header):
    agent = create_agent(client, tools=[http_tool({header: API_KEY, "Accept": "a/b"})])
    headers = agent["tools"][0]["config"]["headers"]
    assert headers["Accept"] == "a/b"
    name = headers[header]["secret"]
    secret = Secret.objects.get(owner=user, name=name)
    assert secrets.decrypt(secret.ciphertext) == API_KEY
    stored = AgentTool.objects.get(agent_id=agent["id"]).config
    version = AgentVersion.objects.get(agent_id=agent["id"]).config
    assert API_KEY not in json.dumps(stored) + json.dumps(version)


def test_saving_the_same_plain_value_again_keeps_the_version_and_the_secret(client):
    agent = create_agent(client, tools=[http_tool({"Authorization": API_KEY})])
    response = client.patch(
        f"/api/agents/{agent['id']}/",
        {"tools": [http_tool({"Authorization": API_KEY})]},
        format="json",
    )
    assert response.json()["version"] == 1
    assert Secret.objects.count() == 1
    changed = client.patch(
        f"/api/agents/{agent['id']}/",
        {"tools": [http_tool({"Authorization": "sk-new"})]},
        format="json",
    ).json()
    assert changed["version"] == 2 and Secret.objects.count() == 2
    names = {
        changed["tools"][0]["config"]["headers"]["Authorization"]["secret"],
        agent["tools"][0]["config"]["headers"]["Authorization"]["secret"],
    }
    assert len(names) == 2


# ---- what others see -------------------------------------------------------------


def test_another_user_sees_every_header_of_a_public_agent_masked(client, other_client):
    add_secret(client, "weather-key")
    agent = create_agent(
        client,
        visibility="public",
        tools=[
            http_tool({"Authorization": {"secret": "weather-key"}, "X-Plan": "gold"}),
            mcp_tool({"X-Token": API_KEY}),
        ],
    )
    for response in (
        other_client.get(f"/api/agents/{agent['id']}/"),
        other_client.get("/api/agents/?visibility=public"),
    ):
        text = response.content.decode()
        assert response.status_code == 200
        assert "weather-key" not in text and API_KEY not in text and "gold" not in text
    seen = other_client.get(f"/api/agents/{agent['id']}/").json()["tools"]
    assert [tool["config"]["headers"] for tool in seen] == [
        {"Authorization": "***", "X-Plan": "***"},
        {"X-Token": "***"},
    ]
    own = client.get(f"/api/agents/{agent['id']}/").json()["tools"]
    assert own[0]["config"]["headers"]["Authorization"] == {"secret": "weather-key"}


def test_versions_and_restore_are_the_owners_only(client, other_client, other_user):
    theirs = AgentFactory(owner=other_user, visibility="public")
    assert_error(client.get(f"/api/agents/{theirs.pk}/versions/"), 404)
    assert_error(client.post(f"/api/agents/{theirs.pk}/versions/1/restore/"), 404)
    assert other_client.get(f"/api/agents/{theirs.pk}/versions/").status_code == 200


def test_restoring_a_version_whose_secret_was_deleted_is_a_400(client):
    secret = add_secret(client, "weather-key").json()
    agent = create_agent(
        client, tools=[http_tool({"X-Key": {"secret": "weather-key"}})]
    )
    client.patch(f"/api/agents/{agent['id']}/", {"tools": []}, format="json")
    client.delete(f"/api/secrets/{secret['id']}/")
    error = assert_error(
        client.post(f"/api/agents/{agent['id']}/versions/1/restore/"), 400
    )
    assert "weather-key" in json.dumps(error["details"])
    add_secret(client, "weather-key")
    restored = client.post(f"/api/agents/{agent['id']}/versions/1/restore/")
    assert restored.status_code == 200, restored.content


def test_a_listing_never_holds_header_values_or_secret_names(
    client, other_client, user
):
    add_secret(client, "weather-key")
    agent = create_agent(
        client,
        tools=[http_tool({"Authorization": {"secret": "weather-key"}, "X-Plan": "g"})],
    )
    response = client.post(
        "/api/marketplace/",
        {"agent": agent["id"], "title": "Weather"},
        format="json",
    )
    assert response.status_code == 201, response.content
    listing = Listing.objects.get(pk=response.json()["id"])
    assert listing.config["tools"][0]["config"]["headers"] == {
        "Authorization": "***",
        "X-Plan": "***",
    }
    for reader in (client, other_client):
        text = reader.get(f"/api/marketplace/{listing.pk}/").content.decode()
        assert "weather-key" not in text and '"g"' not in text
        assert "weather-key" not in reader.get("/api/marketplace/").content.decode()


def test_installing_a_listing_copies_no_secret_and_leaves_headers_to_fill(
    client, other_client, other_user
):
    add_secret(client, "weather-key")
    agent = create_agent(
        client, tools=[http_tool({"Authorization": {"secret": "weather-key"}})]
    )
    listing = client.post(
        "/api/marketplace/", {"agent": agent["id"], "title": "W"}, format="json"
    ).json()
    response = other_client.post(f"/api/marketplace/{listing['id']}/install/")
    assert response.status_code == 201, response.content
    installed = Agent.objects.get(pk=response.json()["id"])
    assert installed.owner == other_user
    assert installed.tools.get().config["headers"] == {"Authorization": ""}
    assert not Secret.objects.filter(owner=other_user).exists()


def test_a_listing_published_with_plain_values_before_is_masked_and_not_copied(
    client, other_user
):
    source = AgentFactory(owner=other_user)
    config = {**source.config_snapshot(), "tools": [http_tool({"X-Key": API_KEY})]}
    listing = Listing.objects.create(
        publisher=other_user,
        source_agent=source,
        config=config,
        title="Old",
        is_approved=True,
    )
    text = client.get(f"/api/marketplace/{listing.pk}/").content.decode()
    assert API_KEY not in text and '"***"' in text
    installed = client.post(f"/api/marketplace/{listing.pk}/install/").json()
    assert API_KEY not in json.dumps(installed)
    assert AgentTool.objects.get(agent_id=installed["id"]).config["headers"] == {
        "X-Key": ""
    }


def test_model_settings_extra_headers_are_masked_for_others_and_in_listings(
    client, other_client
):
    extra = {"extra_headers": {"X-Provider-Key": API_KEY}, "temperature": 0.5}
    agent = create_agent(client, visibility="public", model_settings=extra)
    assert client.get(f"/api/agents/{agent['id']}/").json()["model_settings"] == extra
    seen = other_client.get(f"/api/agents/{agent['id']}/").json()["model_settings"]
    assert seen == {"extra_headers": {"X-Provider-Key": "***"}, "temperature": 0.5}
    listing = client.post(
        "/api/marketplace/", {"agent": agent["id"], "title": "W"}, format="json"
    ).json()
    assert API_KEY not in json.dumps(Listing.objects.get(pk=listing["id"]).config)
    installed = other_client.post(f"/api/marketplace/{listing['id']}/install/")
    assert installed.json()["model_settings"]["extra_headers"] == {"X-Provider-Key": ""}
