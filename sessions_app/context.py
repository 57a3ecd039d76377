"""What a run of a turn needs from the database, read without a model.

Public surface:
    TurnContext                        the agent's config, the session's state, the
                                       model history and the prompt of one run
    load_context(execution_id, *, resuming=False)
                                       the context of a stored execution (a queued
                                       turn starting, a paused one resuming)
    context_of(execution, session, agent, ...)
                                       the same from rows the caller has just read
    config_at(agent, version)          the agent's config at a version, or
                                       TurnRejected (409) when it is no longer stored

The history is that of the session's earlier finished turns (root executions:
a delegated child's exchange is in its parent's messages as the tool's call
and result): all of them, or the last `AGENTRY_HISTORY_TURNS` (whole turns, so
a tool call and its result stay together). A turn's attachments come from its stored user event and reach
the prompt of that turn only (see `sessions_app.attachments`). The runner and
the history benchmark both read contexts through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from pydantic_ai import ModelMessagesTypeAdapter
from pydantic_ai.messages import repair_messages

from agents.models import Agent, AgentVersion
from agents.selectors import agent_answers, agent_config_at
from sessions_app import services
from sessions_app.attachments import prompt_with_attachments, with_attachment_content
from sessions_app.models import AgentExecution, Event, Session
from sessions_app.services import TurnRejected


@dataclass
class TurnContext:
    config: dict[str, Any]
    state: dict[str, Any]
    user_id: Any
    agent_id: Any
    owner_id: Any
    user_role: str
    history: list[Any]
    prompt: str | list[Any] | None
    own_messages: list[Any] = field(default_factory=list)
    own_usage: dict[str, int] = field(default_factory=dict)
    # A taken-over turn's tool events stored before this run (not stored again).
    stored_tool_calls: frozenset[str] = frozenset()
    stored_tool_results: frozenset[str] = frozenset()


def config_at(agent: Agent, version: int) -> dict[str, Any]:
    try:
        return agent_config_at(agent=agent, version=version)
    except AgentVersion.DoesNotExist:
        raise TurnRejected(
            "agent_version_unavailable",
            f"Version {version} of this agent is no longer stored; set the "
            'session\'s agent_version to "latest" to run the current one.',
            409,
        ) from None


def load_context(execution_id: str, *, resuming: bool = False) -> TurnContext:
    """The context of a stored execution, read in one go (call it on a thread
    that may use the database)."""
    execution = AgentExecution.objects.select_related("session", "agent", "user").get(
        pk=execution_id
    )
    # A queued turn starts, or a paused one resumes, only while the agent
    # still answers the session's user (it may have changed since).
    if not agent_answers(agent=execution.agent, user=execution.user):
        raise services.AgentUnavailable
    if resuming:
        return context_of(execution, execution.session, execution.agent, resuming=True)
    user_event = (
        Event.objects.filter(execution_id=execution.pk, author=Event.Author.USER)
        .only("metadata")
        .first()
    )
    attachments = (
        (user_event.metadata or {}).get("attachments", []) if user_event else []
    )
    return context_of(
        execution, execution.session, execution.agent, attachments=attachments
    )


def context_of(
    execution: AgentExecution,
    session: Session,
    agent: Agent,
    *,
    attachments: list[dict[str, Any]] | None = None,
    resuming: bool = False,
    config: dict[str, Any] | None = None,
    earlier_turns: bool = True,
) -> TurnContext:
    """What a run of `execution` needs: the agent's config, the session's
    state and the model history of the session's earlier turns (all of them,
    or the last `AGENTRY_HISTORY_TURNS`).

    The config is that of the version the execution recorded when it was
    opened (`config`, when the caller has just read it): the session's pinned
    version, or the latest one then. A paused turn resumes on it too, after a
    restart as well, whatever the owner changed meanwhile.

    `earlier_turns=False`: the caller knows the session had no event before
    this turn (its first), so there is no history to read.
    """
    if config is None:
        config = config_at(agent, execution.agent_version)
    # Turns' roots only: a delegated child's messages are its own conversation
    # (its prompt is the task, not something the user said).
    previous = (
        AgentExecution.objects.filter(
            session_id=session.pk, finished_at__isnull=False, parent__isnull=True
        )
        .exclude(pk=execution.pk)
        .order_by("-created_at")
        .values_list("messages", flat=True)
    )
    if settings.AGENTRY_HISTORY_TURNS:
        # Whole turns only: a turn's tool calls and their results stay together.
        previous = previous[: settings.AGENTRY_HISTORY_TURNS]
    history: list[Any] = []
    for messages in reversed(list(previous) if earlier_turns else []):
        if messages:
            history.extend(ModelMessagesTypeAdapter.validate_python(messages))
    # A turn cancelled (or left awaiting approval) between a tool call and its
    # result leaves calls without returns; closing them out keeps the history
    # one the model accepts before a new prompt.
    history = repair_messages(history)
    common: dict[str, Any] = {
        "config": config,
        "state": dict(session.state or {}),
        "user_id": execution.user_id,
        "agent_id": agent.pk,
        "owner_id": agent.owner_id,
        "user_role": execution.user.tool_role,
    }
    if resuming:
        # The paused run's own messages end with the calls awaiting decisions;
        # the run continues from them with no new prompt.
        own = list(execution.messages or [])
        return TurnContext(
            **common,
            history=history
            + with_attachment_content(ModelMessagesTypeAdapter.validate_python(own)),
            prompt=None,
            own_messages=own,
            own_usage=dict(execution.usage or {}),
        )
    # The prompt carries its attachments' content for this turn only; the
    # stored history keeps references.
    return TurnContext(
        **common,
        history=history,
        prompt=prompt_with_attachments(execution.input, attachments or []),
    )
