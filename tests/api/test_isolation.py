"""Two users: every route and method on the other user's objects is a 404, lists
never include them, and a body naming them is a 400."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile

from agents.models import Agent, Listing
from sessions_app.models import Artifact, Session
from tests.api.conftest import assert_error
from tests.factories import AgentFactory, EventFactory, ExecutionFactory, SessionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(other_user):
    """One of each object, all owned by the other user (listing not approved)."""
    agent = AgentFactory(owner=other_user, name="their-secret-agent")
    session = SessionFactory(user=other_user, agent=agent, title="their-secret-session")
    EventFactory(session=session, content="their-secret-event")
    execution = ExecutionFactory(session=session)
    artifact = Artifact(
        owner=other_user, session=session, name="their-secret.txt", size=6
    )
    artifact.file.save("x", ContentFile(b"secret"), save=True)
    listing = Listing.objects.create(
        publisher=other_user,
        source_agent=agent,
        config=agent.config_snapshot(),
        title="their-secret-listing",
        is_approved=False,
    )
    return {
        "agent": agent.pk,
        "session": session.pk,
        "execution": execution.pk,
        "artifact": artifact.pk,
        "listing": listing.pk,
    }


ROUTES = [
    ("get", "/api/agents/{agent}/"),
    ("put", "/api/agents/{agent}/"),
    ("patch", "/api/agents/{agent}/"),
    ("delete", "/api/agents/{agent}/"),
    ("get", "/api/agents/{agent}/versions/"),
    ("post", "/api/agents/{agent}/versions/1/restore/"),
    ("post", "/api/agents/{agent}/run/"),
    ("get", "/api/sessions/{session}/"),
    ("patch", "/api/sessions/{session}/"),
    ("delete", "/api/sessions/{session}/"),
    ("get", "/api/sessions/{session}/events/"),
    ("get", "/api/sessions/{session}/artifacts/"),
    ("post", "/api/sessions/{session}/artifacts/"),
    ("post", "/api/sessions/{session}/messages/"),
    ("post", "/api/sessions/{session}/cancel/"),
    ("get", "/api/executions/{execution}/"),
    ("get", "/api/artifacts/{artifact}/"),
    ("get", "/api/artifacts/{artifact}/download/"),
    ("get", "/api/marketplace/{listing}/"),
    ("delete", "/api/marketplace/{listing}/"),
    ("post", "/api/marketplace/{listing}/install/"),
]


@pytest.mark.parametrize("slash", ["/", ""])
@pytest.mark.parametrize("method,route", ROUTES)
def test_other_users_objects_are_404_on_every_route_and_method(
    client, theirs, method, route, slash
):
    path = route.format(**theirs).rstrip("/") + slash
    body = {"name": "hijacked", "title": "hijacked", "content": "hi", "input": "hi"}
    response = getattr(client, method)(path, body, format="json")
    error = assert_error(response, 404)
    assert "secret" not in json.dumps(error)
    assert Agent.objects.get(pk=theirs["agent"]).name == "their-secret-agent"
    assert Session.objects.get(pk=theirs["session"]).title == "their-secret-session"
    assert Listing.objects.filter(pk=theirs["listing"]).exists()


LISTS = [
    "/api/agents/",
    "/api/agents/?visibility=private",
    "/api/agents/?visibility=public",
    "/api/agents/?search=secret",
    "/api/sessions/",
    "/api/sessions/?search=secret",
    "/api/sessions/?agent={agent}",
    "/api/executions/",
    "/api/executions/?session={session}",
    "/api/artifacts/",
    "/api/artifacts/?session={session}",
    "/api/marketplace/",
    "/api/marketplace/?search=secret",
]


@pytest.mark.parametrize("path", LISTS)
def test_lists_and_searches_never_include_other_users_objects(client, theirs, path):
    response = client.get(path.format(**theirs))
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/sessions/", {"agent": "{agent}"}),
        ("/api/marketplace/", {"agent": "{agent}", "title": "t"}),
    ],
)
def test_a_body_naming_an_object_you_cannot_see_is_400(client, theirs, path, body):
    body = {k: v.format(**theirs) for k, v in body.items()}
    error = assert_error(client.post(path, body, format="json"), 400)
    assert "agent" in error["details"]


def test_the_owner_still_sees_everything(other_client, theirs):
    for route in (
        "/api/agents/{agent}/",
        "/api/sessions/{session}/events/",
        "/api/executions/{execution}/",
        "/api/artifacts/{artifact}/download/",
        "/api/marketplace/{listing}/",
    ):
        assert other_client.get(route.format(**theirs)).status_code == 200, route
