"""The secret store: encryption at rest, key rotation, the admin, and the data
migration that moves credential-like header values out of stored configs."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.urls import reverse

from accounts import secrets
from accounts.models import Secret
from agents.models import Agent
from tests.test_admin import agent_post

API_KEY = "sk-live-0123456789abcdef"


def test_a_value_is_encrypted_and_decrypts_back(settings):
    token = secrets.encrypt(API_KEY)
    assert API_KEY not in token
    assert secrets.decrypt(token) == API_KEY
    assert secrets.encrypt(API_KEY) != token  # Fernet tokens carry a fresh IV


def test_the_default_key_follows_secret_key(settings):
    settings.AGENTRY_SECRETS_KEY = []
    settings.SECRET_KEY = "first"
    token = secrets.encrypt(API_KEY)
    settings.SECRET_KEY = "second"
    with pytest.raises(secrets.SecretUnavailableError):
        secrets.decrypt(token)


def test_a_generated_fernet_key_and_a_passphrase_both_work_as_keys(settings):
    for key in (Fernet.generate_key().decode(), "a long passphrase"):
        settings.AGENTRY_SECRETS_KEY = [key]
        assert secrets.decrypt(secrets.encrypt(API_KEY)) == API_KEY


@pytest.mark.django_db
def test_rotation_reencrypts_every_secret_with_the_first_key(settings, user, capsys):
    settings.AGENTRY_SECRETS_KEY = ["old key"]
    secret = Secret.objects.create(
        owner=user, name="k", ciphertext=secrets.encrypt(API_KEY)
    )
    settings.AGENTRY_SECRETS_KEY = ["new key", "old key"]
    assert secrets.decrypt(secret.ciphertext) == API_KEY
    call_command("rotate_secrets")
    assert "1" in capsys.readouterr().out
    secret.refresh_from_db()
    settings.AGENTRY_SECRETS_KEY = ["new key"]
    assert secrets.decrypt(secret.ciphertext) == API_KEY


@pytest.mark.parametrize(
    "header, credential",
    [
        ("Authorization", True),
        ("proxy-authorization", True),
        ("Cookie", True),
        ("X-API-KEY", True),
        ("X-Auth-Token", True),
        ("Client-Secret", True),
        ("Accept", False),
        ("X-Plan", False),
    ],
)
def test_credential_header_names(header, credential):
    assert secrets.is_credential_header(header) is credential


@pytest.mark.django_db
def test_the_admin_lists_secrets_without_their_values(client, admin_user, user):
    secret = Secret.objects.create(
        owner=user, name="weather-key", ciphertext=secrets.encrypt(API_KEY)
    )
    client.force_login(admin_user)
    listing = client.get("/admin/accounts/secret/")
    page = client.get(f"/admin/accounts/secret/{secret.pk}/change/")
    for response in (listing, page):
        assert response.status_code == 200
        text = response.content.decode()
        assert "weather-key" in text
        assert API_KEY not in text and secret.ciphertext not in text
    assert client.get("/admin/accounts/secret/add/").status_code == 403


# ---- the data migration ------------------------------------------------------------

BEFORE = [
    ("accounts", "0002_tokens_valid_after_and_secrets"),
    ("agents", "0002_tool_approval_ttl_and_edit"),
    ("sessions_app", "0002_pinned_versions_and_approval_audit"),
]
AFTER = [("accounts", "0003_header_credentials_to_secrets")]


def http_tool(headers: dict) -> dict:
    return {
        "tool": "http_endpoint",
        "config": {
            "name": "weather",
            "description": "Weather.",
            "url": "https://api.example.com/weather",
            "headers": headers,
        },
        "enabled": True,
        "requires_approval": False,
    }


def test_the_migration_moves_header_credentials_into_secrets(migrator):
    apps = migrator(BEFORE)
    User = apps.get_model("accounts", "User")
    Agent = apps.get_model("agents", "Agent")
    AgentTool = apps.get_model("agents", "AgentTool")
    AgentVersion = apps.get_model("agents", "AgentVersion")
    Listing = apps.get_model("agents", "Listing")
    owner = User.objects.create(username="owner", email="o@example.com")
    agent = Agent.objects.create(owner=owner, name="Weather", slug="weather")
    headers = {"Authorization": API_KEY, "X-Plan": "gold"}
    tool = AgentTool.objects.create(
        agent=agent, tool="http_endpoint", config=http_tool(headers)["config"]
    )
    old_headers = {"Authorization": "sk-old-key"}
    for version, entry in ((1, http_tool(old_headers)), (2, http_tool(headers))):
        AgentVersion.objects.create(
            agent=agent, version=version, config={"name": "W", "tools": [entry]}
        )
    listing = Listing.objects.create(
        publisher=owner,
        source_agent=agent,
        title="Weather",
        config={
            "name": "W",
            "model_settings": {"extra_headers": {"X-Provider-Key": "sk-provider"}},
            "tools": [http_tool(headers)],
        },
    )

    apps = migrator(AFTER)
    Secret = apps.get_model("accounts", "Secret")
    values = {
        s.name: secrets.decrypt(s.ciphertext)
        for s in Secret.objects.filter(owner_id=owner.pk)
    }
    assert sorted(values.values()) == sorted([API_KEY, "sk-old-key"])
    current = apps.get_model("agents", "AgentTool").objects.get(pk=tool.pk).config
    reference = current["headers"]["Authorization"]
    assert values[reference["secret"]] == API_KEY
    assert current["headers"]["X-Plan"] == "gold"
    versions = apps.get_model("agents", "AgentVersion").objects.filter(agent=agent.pk)
    by_number = {v.version: v.config["tools"][0]["config"]["headers"] for v in versions}
    assert values[by_number[1]["Authorization"]["secret"]] == "sk-old-key"
    assert by_number[2]["Authorization"] == reference
    published = apps.get_model("agents", "Listing").objects.get(pk=listing.pk).config
    assert published["tools"][0]["config"]["headers"] == {
        "Authorization": "***",
        "X-Plan": "***",
    }
    assert published["model_settings"] == {"extra_headers": {"X-Provider-Key": "***"}}
    everything = json.dumps(
        [current, [v.config for v in versions], published], default=str
    )
    assert API_KEY not in everything and "sk-old-key" not in everything


# ---- saving agents in the admin ----------------------------------------------------


def admin_tool(headers: dict) -> dict:
    return {"tool": "http_endpoint", "config": json.dumps(http_tool(headers)["config"])}


@pytest.mark.django_db
def test_the_admin_refuses_a_secret_the_owner_does_not_have(client, admin_user, user):
    Secret.objects.create(owner=admin_user, name="admins-key", ciphertext="x")
    client.force_login(admin_user)
    tool = admin_tool({"Authorization": {"secret": "admins-key"}})
    response = client.post(
        reverse("admin:agents_agent_add"), agent_post(None, user, [tool])
    )
    assert response.status_code == 200
    assert "admins-key" in response.content.decode()
    assert not Agent.objects.exists()


@pytest.mark.django_db
def test_a_plain_credential_saved_in_the_admin_becomes_a_secret(
    client, admin_user, user
):
    client.force_login(admin_user)
    tool = admin_tool({"X-Api-Key": API_KEY})
    response = client.post(
        reverse("admin:agents_agent_add"), agent_post(None, user, [tool])
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    agent = Agent.objects.get()
    name = agent.tools.get().config["headers"]["X-Api-Key"]["secret"]
    assert secrets.decrypt(Secret.objects.get(owner=user, name=name).ciphertext) == (
        API_KEY
    )
    assert API_KEY not in json.dumps(agent.versions.get().config)


# ---- seeding -----------------------------------------------------------------------


def seed_file(tmp_path, headers: dict):
    tool = http_tool(headers)
    path = tmp_path / "agents.json"
    path.write_text(json.dumps([{"name": "Seeded", "model": "test", "tools": [tool]}]))
    return str(path)


@pytest.mark.django_db
def test_seeding_a_reference_to_a_missing_secret_is_a_clear_error(tmp_path, user):
    path = seed_file(tmp_path, {"Authorization": {"secret": "missing-key"}})
    with pytest.raises(CommandError, match="missing-key"):
        call_command("seed_agents", path, "--owner", user.username)
    assert not Agent.objects.exists()


@pytest.mark.django_db
def test_seeding_a_plain_credential_stores_it_as_a_secret(tmp_path, user):
    path = seed_file(tmp_path, {"Authorization": API_KEY})
    call_command("seed_agents", path, "--owner", user.username)
    call_command("seed_agents", path, "--owner", user.username)
    agent = Agent.objects.get(owner=user)
    assert agent.version == 1 and Secret.objects.filter(owner=user).count() == 1
    assert API_KEY not in json.dumps(agent.config_snapshot())
