"""`manage.py chat`: a terminal client of the same runner."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from sessions_app.models import AgentExecution, Event, Session

pytestmark = pytest.mark.django_db(transaction=True)


def chat(*args: str) -> str:
    out = io.StringIO()
    call_command("chat", *args, stdout=out)
    return out.getvalue()


def test_chat_streams_answers_and_stores_the_conversation(fake_llm, user, make_agent):
    agent = make_agent(user, name="Helper")
    output = chat(
        agent.slug,
        "--message",
        "[[reply hello from the model]] hi",
        "--message",
        "[[tokens=3]] again",
    )
    assert "agent> hello from the model" in output
    assert "agent> word0 word1 word2" in output
    assert output.count("[succeeded,") == 2
    session = Session.objects.get(agent=agent)
    assert list(
        Event.objects.filter(session=session).values_list("sequence_number", flat=True)
    ) == [1, 2, 3, 4]


def test_chat_shows_tool_calls_and_continues_a_session(
    fake_llm, user, make_agent, make_session, settings
):
    (settings.REPO_ROOT / "notes.txt").write_text("remember the milk")
    agent = make_agent(user, tools=[{"tool": "read_file", "config": {}}])
    session = make_session(user, agent=agent)
    output = chat(
        str(agent.pk),
        "--session",
        str(session.pk),
        "--message",
        '[[call read_file {"path": "notes.txt"}]] go',
    )
    assert '[tool] read_file({"path": "notes.txt"})' in output
    assert "remember the milk" in output
    assert AgentExecution.objects.get(session=session).status == "succeeded"


def test_chat_reports_failed_turns(fake_llm, user, make_agent):
    agent = make_agent(user)
    output = chat(agent.slug, "--message", "[[error=500]] fail")
    assert "! The model failed" in output and "[failed," in output


@pytest.mark.parametrize(
    "args,message",
    [
        (["no-such-agent"], "No agent"),
        (["{agent}", "--session", "not-a-uuid"], "No session"),
        (["{agent}", "--user", "nobody"], "No user"),
    ],
)
def test_chat_refuses_bad_arguments(user, make_agent, args, message):
    agent = make_agent(user)
    with pytest.raises(CommandError, match=message):
        chat(*[a.format(agent=agent.slug) for a in args])


def test_chat_refuses_another_users_private_agent(user, other_user, make_agent):
    agent = make_agent(other_user)
    with pytest.raises(CommandError, match="private"):
        chat(str(agent.pk), "--user", user.username)
