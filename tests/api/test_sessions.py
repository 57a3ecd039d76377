"""Sessions, their event log, and executions."""

from __future__ import annotations

import uuid

import pytest

from sessions_app.models import Session
from sessions_app.selectors import events_after
from tests.api.conftest import assert_error
from tests.factories import AgentFactory, EventFactory, ExecutionFactory, SessionFactory

pytestmark = pytest.mark.django_db


def test_create_session_on_own_agent_with_every_field(client, user, agent):
    body = {
        "agent": str(agent.pk),
        "title": "first",
        "state": {"k": 1},
        "external_session_id": "ext-1",
        "configuration": {"multitask": "enqueue"},
    }
    response = client.post("/api/sessions/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert {k: data[k] for k in body} == body
    assert data["user"] == str(user.pk) and data["last_sequence"] == 0
    assert client.get(f"/api/sessions/{data['id']}").json()["title"] == "first"


def test_anyone_may_open_a_session_on_a_public_agent_and_it_is_theirs(
    client, user, other_user
):
    public = AgentFactory(owner=other_user, visibility="public")
    response = client.post("/api/sessions/", {"agent": str(public.pk)}, format="json")
    assert response.status_code == 201, response.content
    assert Session.objects.get(pk=response.json()["id"]).user == user


@pytest.mark.parametrize(
    "agent",
    [None, "00000000-0000-0000-0000-000000000000", "not-a-uuid", 5, "private-of-other"],
)
def test_session_needs_an_agent_the_user_can_see(client, other_user, agent):
    if agent == "private-of-other":
        agent = str(AgentFactory(owner=other_user).pk)
    body = {} if agent is None else {"agent": agent}
    error = assert_error(client.post("/api/sessions/", body, format="json"), 400)
    assert "agent" in error["details"]


@pytest.mark.parametrize(
    "body",
    [
        {"configuration": {"multitask": "sometimes"}},
        {"configuration": []},
        {"state": "not an object"},
        {"title": "x" * 201},
    ],
)
def test_invalid_session_fields_are_400(client, agent, body):
    response = client.post(
        "/api/sessions/", {"agent": str(agent.pk), **body}, format="json"
    )
    assert_error(response, 400)


def test_patch_title_state_and_configuration(client, session):
    body = {
        "title": "renamed",
        "state": {"step": 2},
        "configuration": {"multitask": "interrupt"},
    }
    data = client.patch(f"/api/sessions/{session.pk}/", body, format="json").json()
    assert {k: data[k] for k in body} == body


def test_a_sessions_agent_cannot_be_changed(client, user, session):
    other_agent = AgentFactory(owner=user)
    response = client.patch(
        f"/api/sessions/{session.pk}/", {"agent": str(other_agent.pk)}, format="json"
    )
    assert_error(response, 400)


def test_put_is_not_allowed_on_sessions(client, session):
    assert_error(client.put(f"/api/sessions/{session.pk}/", {}, format="json"), 405)


def test_delete_session(client, session):
    assert client.delete(f"/api/sessions/{session.pk}").status_code == 204
    assert_error(client.get(f"/api/sessions/{session.pk}/"), 404)
    assert_error(client.get(f"/api/sessions/{session.pk}/events/"), 404)


def test_session_list_is_own_and_filters_by_agent(client, user, other_user):
    first, second = AgentFactory(owner=user), AgentFactory(owner=user)
    s1, s2 = (
        SessionFactory(user=user, agent=first),
        SessionFactory(user=user, agent=second),
    )
    SessionFactory(user=other_user)
    listed = {s["id"] for s in client.get("/api/sessions/").json()["results"]}
    assert listed == {str(s1.pk), str(s2.pk)}
    filtered = client.get("/api/sessions/", {"agent": str(first.pk)}).json()["results"]
    assert [s["id"] for s in filtered] == [str(s1.pk)]
    assert_error(client.get("/api/sessions/", {"agent": "not-a-uuid"}), 400)


# ---------------------------------------------------------------- events


@pytest.fixture
def five_events(session):
    return [EventFactory(session=session) for _ in range(5)]


def seqs(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [e["sequence_number"] for e in response.json()["results"]]


def test_events_come_in_sequence_order_with_every_contract_field(
    client, session, five_events
):
    data = client.get(f"/api/sessions/{session.pk}/events/").json()
    assert [e["sequence_number"] for e in data["results"]] == [1, 2, 3, 4, 5]
    assert data["next"] is None and data["previous"] is None
    assert {
        "author",
        "kind",
        "content",
        "metadata",
        "actions",
        "partial",
        "turn_complete",
        "error_code",
        "error_message",
        "sequence_number",
    } <= data["results"][0].keys()


def test_after_sequence_and_limit_page_the_log(client, session, five_events):
    url = f"/api/sessions/{session.pk}/events/"
    assert seqs(client.get(url, {"after_sequence": 1, "limit": 2})) == [2, 3]
    assert seqs(client.get(url, {"after_sequence": 5})) == []
    page = client.get(url, {"limit": 2}).json()
    assert "after_sequence=2" in page["next"]
    assert seqs(client.get(page["next"])) == [3, 4]
    last = client.get(url, {"after_sequence": 4, "limit": 2}).json()
    assert last["next"] is None and "after_sequence=2" in last["previous"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "many"},
        {"after_sequence": -1},
        {"after_sequence": "x"},
        {"after_sequence": 10**20},
    ],
)
def test_invalid_event_paging_is_400(client, session, params):
    assert_error(client.get(f"/api/sessions/{session.pk}/events/", params), 400)


def test_events_after_selector_orders_and_limits(session, five_events):
    assert [e.sequence_number for e in events_after(session.pk, 2, None)] == [3, 4, 5]
    assert [e.sequence_number for e in events_after(session.pk, 0, 2)] == [1, 2]


# ---------------------------------------------------------------- executions


def test_execution_detail_has_usage_and_timing(client, session):
    execution = ExecutionFactory(session=session, duration_ms=12)
    data = client.get(f"/api/executions/{execution.pk}/").json()
    for field in (
        "id",
        "session",
        "agent",
        "agent_version",
        "status",
        "input",
        "output",
        "model",
        "usage",
        "error_code",
        "error_message",
        "started_at",
        "finished_at",
        "duration_ms",
        "created_at",
    ):
        assert field in data, field
    assert (data["session"], data["usage"]["requests"], data["duration_ms"]) == (
        str(session.pk),
        1,
        12,
    )


@pytest.mark.parametrize(
    "key,value,listed",
    [
        ("session", "own", True),
        ("session", str(uuid.uuid4()), False),
        ("agent", "own", True),
        ("status", "succeeded", True),
        ("status", "failed", False),
    ],
)
def test_execution_filters(client, session, key, value, listed):
    execution = ExecutionFactory(session=session)
    if value == "own":
        value = str(session.pk if key == "session" else session.agent_id)
    got = {
        x["id"] for x in client.get("/api/executions/", {key: value}).json()["results"]
    }
    assert (str(execution.pk) in got) is listed


def test_executions_are_read_only(client, session):
    execution = ExecutionFactory(session=session)
    assert_error(client.post("/api/executions/", {}, format="json"), 405)
    assert_error(client.delete(f"/api/executions/{execution.pk}/"), 405)
    assert_error(
        client.patch(f"/api/executions/{execution.pk}/", {}, format="json"), 405
    )


def test_invalid_execution_status_filter_is_400(client):
    assert_error(client.get("/api/executions/", {"status": "sleeping"}), 400)


def test_a_row_deleted_under_a_request_answers_404():
    """A view whose object is deleted mid-request (the session's save raises
    DoesNotExist rather than recreating it) answers the JSON 404."""
    from core.errors import api_exception_handler
    from sessions_app.models import Session

    response = api_exception_handler(Session.DoesNotExist("gone"), {})
    assert response.status_code == 404
    assert response.data["error"]["code"] == "not_found"
