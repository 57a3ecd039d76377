"""Marketplace: publish a snapshot, browse, install a private copy, unpublish."""

from __future__ import annotations

import pytest

from agents.models import Agent, Listing
from tests.api.conftest import NOTES_KIND, assert_error
from tests.factories import AgentFactory, ListingFactory

pytestmark = pytest.mark.django_db


def publish(client, agent, **fields):
    body = {
        "agent": str(agent.pk),
        "title": "Helper",
        "description": "Helps.",
        "category": "testing",
        "tags": ["x"],
        **fields,
    }
    return client.post("/api/marketplace/", body, format="json")


def test_publish_snapshots_an_own_agent_and_is_approved(client, user, agent):
    response = publish(client, agent)
    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["title"], data["category"], data["tags"], data["is_approved"]) == (
        "Helper",
        "testing",
        ["x"],
        True,
    )
    assert data["config"] == agent.config_snapshot() and data["publisher"] == str(
        user.pk
    )


def test_publish_with_moderation_waits_for_approval(
    client, other_client, agent, settings
):
    settings.AGENTRY_MARKETPLACE_MODERATION = True
    listing = publish(client, agent).json()
    assert listing["is_approved"] is False
    assert client.get(f"/api/marketplace/{listing['id']}/").status_code == 200
    assert_error(other_client.get(f"/api/marketplace/{listing['id']}/"), 404)
    assert_error(other_client.post(f"/api/marketplace/{listing['id']}/install/"), 404)


@pytest.mark.parametrize("which", ["other_private", "other_public", "missing"])
def test_publishing_an_agent_you_do_not_own_is_400(client, other_user, which):
    agent = (
        Agent(pk="00000000-0000-0000-0000-000000000000")
        if which == "missing"
        else AgentFactory(
            owner=other_user,
            visibility="public" if which == "other_public" else "private",
        )
    )
    error = assert_error(publish(client, agent), 400)
    assert "agent" in error["details"]


def test_install_creates_a_private_agent_of_the_caller_with_the_snapshot(
    client, other_client, other_user, user
):
    source = AgentFactory(
        owner=other_user, instructions="Snap.", model_settings={"temperature": 0.3}
    )
    source.tools.create(tool=NOTES_KIND, config={"limit": 2})
    listing = ListingFactory(publisher=other_user, source_agent=source)
    source.instructions = "Changed after publishing."
    source.save()
    response = client.post(f"/api/marketplace/{listing.pk}/install")
    assert response.status_code == 201, response.content
    data = response.json()
    installed = Agent.objects.get(pk=data["id"])
    assert installed.owner == user and installed.visibility == "private"
    assert (installed.instructions, installed.model_settings, installed.version) == (
        "Snap.",
        {"temperature": 0.3},
        1,
    )
    assert data["tools"][0]["tool"] == NOTES_KIND
    assert data["tools"][0]["config"] == {"limit": 2}
    assert installed.versions.count() == 1
    client.post(f"/api/marketplace/{listing.pk}/install/")
    listing.refresh_from_db()
    assert listing.install_count == 2


def test_browse_search_filter_and_order(client, other_user):
    a = ListingFactory(publisher=other_user, title="Alpha writer", category="writing")
    b = ListingFactory(publisher=other_user, title="Beta coder", category="code")
    ListingFactory(publisher=other_user, title="Hidden", is_approved=False)
    Listing.objects.filter(pk=b.pk).update(install_count=9)

    def titles(**params):
        return [
            x["title"]
            for x in client.get("/api/marketplace/", params).json()["results"]
        ]

    assert sorted(titles()) == ["Alpha writer", "Beta coder"]
    assert titles(search="coder") == ["Beta coder"]
    assert titles(category="writing") == [a.title]
    assert titles(ordering="-install_count") == ["Beta coder", "Alpha writer"]
    assert titles(ordering="title") == ["Alpha writer", "Beta coder"]


def test_unpublish_by_publisher_only(client, other_client, user, agent):
    listing = publish(client, agent).json()
    assert_error(other_client.delete(f"/api/marketplace/{listing['id']}/"), 403)
    assert client.delete(f"/api/marketplace/{listing['id']}/").status_code == 204
    assert_error(client.get(f"/api/marketplace/{listing['id']}/"), 404)


def test_listings_cannot_be_edited(client, agent):
    listing = publish(client, agent).json()
    assert_error(
        client.patch(
            f"/api/marketplace/{listing['id']}/", {"title": "x"}, format="json"
        ),
        405,
    )


@pytest.mark.parametrize("tags", ["one", [1, {"a": 1}], ["x" * 51]])
def test_invalid_tags_are_400(client, agent, tags):
    assert_error(publish(client, agent, tags=tags), 400)


def delegating_to(target, owner, **fields):
    """A published agent of `owner` that hands work to `target`."""
    source = AgentFactory(owner=owner, **fields)
    source.tools.create(
        tool="delegate",
        config={"agent": str(target.pk), "name": "ask_helper", "description": ""},
    )
    return ListingFactory(publisher=owner, source_agent=source)


def test_an_install_whose_delegate_target_the_installer_cannot_see_is_400(
    client, other_user, user
):
    helper = AgentFactory(owner=other_user, visibility="private")
    listing = delegating_to(helper, other_user)
    before = Agent.objects.filter(owner=user).count()
    error = assert_error(client.post(f"/api/marketplace/{listing.pk}/install/"), 400)
    assert str(helper.pk) in error["details"]["tools"][0]
    assert "cannot be installed here" in error["details"]["tools"][0]
    assert Agent.objects.filter(owner=user).count() == before, "nothing created"
    listing.refresh_from_db()
    assert listing.install_count == 0

    # Once the target is public (and active), the copy may use it.
    helper.visibility = "public"
    helper.save()
    response = client.post(f"/api/marketplace/{listing.pk}/install/")
    assert response.status_code == 201, response.content
    assert response.json()["tools"][0]["config"]["agent"] == str(helper.pk)


def test_an_install_whose_workflow_step_the_installer_cannot_see_is_400(
    client, other_user
):
    step = AgentFactory(owner=other_user, visibility="private")
    source = AgentFactory(
        owner=other_user,
        kind="workflow",
        model="",
        workflow={"steps": [{"name": "only", "agent": str(step.pk)}]},
    )
    listing = ListingFactory(publisher=other_user, source_agent=source)
    error = assert_error(client.post(f"/api/marketplace/{listing.pk}/install/"), 400)
    assert str(step.pk) in error["details"]["workflow"][0]
