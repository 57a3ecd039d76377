"""The admin's "Try it" page runs one turn through the runner."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sessions_app.models import AgentExecution, Session

pytestmark = pytest.mark.django_db(transaction=True)


def test_agent_change_form_links_to_try_it(client, admin_user, make_agent):
    agent = make_agent(admin_user)
    client.force_login(admin_user)
    page = client.get(reverse("admin:agents_agent_change", args=[agent.pk]))
    assert (
        reverse("admin:sessions_app_session_try", args=[agent.pk])
        in page.content.decode()
    )


def test_try_it_runs_a_turn_and_shows_its_events(
    fake_llm, client, admin_user, user, make_agent
):
    agent = make_agent(user)
    client.force_login(admin_user)
    url = reverse("admin:sessions_app_session_try", args=[agent.pk])
    assert client.get(url).status_code == 200
    page = client.post(url, {"message": "[[reply all good here]] check"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Result: succeeded" in html and "all good here" in html
    session = Session.objects.get(agent=agent, user=admin_user)
    assert AgentExecution.objects.get(session=session).status == "succeeded"


def test_try_it_refuses_an_empty_message_and_non_staff(
    client, admin_user, user, make_agent
):
    agent = make_agent(user)
    url = reverse("admin:sessions_app_session_try", args=[agent.pk])
    client.force_login(user)
    assert client.get(url).status_code == 302, "non-staff are sent to the admin login"
    client.force_login(admin_user)
    page = client.post(url, {"message": ""})
    assert "This field is required" in page.content.decode()
    assert not Session.objects.exists()
