"""A turn's context (config, bounded history, prompt) read without a model."""

from __future__ import annotations

from pydantic_ai import ModelMessagesTypeAdapter, ModelRequest, ModelResponse
from pydantic_ai.messages import TextPart, UserPromptPart

from sessions_app import services
from sessions_app.context import load_context
from sessions_app.models import AgentExecution


def _open(session, user, content: str, client_message_id: str = ""):
    return services.turn_open(
        session=session,
        user_id=user.pk,
        content=content,
        metadata={},
        client_message_id=client_message_id,
        policy="reject",
        model="test",
    )


def _answered(session, user, question: str) -> None:
    execution = _open(session, user, question).execution
    messages = [
        ModelRequest(parts=[UserPromptPart(content=question)]),
        ModelResponse(parts=[TextPart(content=f"answer to {question}")]),
    ]
    services.execution_finish(
        execution.pk,
        status=AgentExecution.Status.SUCCEEDED,
        messages=ModelMessagesTypeAdapter.dump_python(messages, mode="json"),
    )


def test_the_history_bound_keeps_the_last_whole_turns(user, make_session, settings):
    settings.AGENTRY_HISTORY_TURNS = 2
    session = make_session(user)
    for n in range(4):
        _answered(session, user, f"question {n}")
    execution = _open(session, user, "and now?").execution

    context = load_context(str(execution.pk))

    prompts = [
        part.content
        for message in context.history
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]
    assert prompts == ["question 2", "question 3"]
    assert context.prompt == "and now?"
    assert context.config["model"] == session.agent.model


def test_without_a_bound_the_whole_history_is_loaded(user, make_session, settings):
    settings.AGENTRY_HISTORY_TURNS = 0
    session = make_session(user)
    for n in range(3):
        _answered(session, user, f"question {n}")
    execution = _open(session, user, "and now?").execution

    assert len(load_context(str(execution.pk)).history) == 6
