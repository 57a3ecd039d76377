"""Reads of sessions, events, executions and artifacts, scoped to their user.

Public surface:
    sessions_of(user)
    session_of(*, user, session_id)            the user's session with its agent, or None
    session_for_turn(*, session_id, user_id)   the session a turn runs in, with its agent
                                               and user (raises Session.DoesNotExist)
    events_after(session_id, after_sequence, limit)   stored events in sequence order
    events_of_execution(execution_id)          one turn's events in sequence order
    attachments_for_turn(*, user_id, session_id, ids)
                                               the artifacts among `ids` a turn of
                                               the user's session may attach, by id
    executions_of(user)
    artifacts_of(user)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Q, QuerySet

from accounts.models import User
from core.text import is_uuid
from sessions_app.models import AgentExecution, Artifact, Event, Session


def sessions_of(user: User) -> QuerySet[Session]:
    return Session.objects.filter(user=user)


def session_of(*, user: User, session_id: Any) -> Session | None:
    """`user`'s session `session_id` with its agent; None when it is not theirs
    (or `session_id` is not an id at all)."""
    if not is_uuid(session_id):
        return None
    return sessions_of(user).select_related("agent").filter(pk=session_id).first()


def session_for_turn(*, session_id: Any, user_id: Any) -> Session:
    """The session in which `user_id` starts a turn, with its agent and user.

    Only the session's own user runs turns in it. Whether its agent still
    answers them is `agents.selectors.agent_answers`, checked by the runner.

    Raises:
        Session.DoesNotExist: no such session of that user.
    """
    return Session.objects.select_related("agent", "user").get(
        pk=session_id, user_id=user_id
    )


def events_after(
    session_id: Any, after_sequence: int = 0, limit: int | None = None
) -> QuerySet[Event]:
    """Events of the session with a sequence number above `after_sequence`,
    oldest first (served by the unique (session, sequence_number) index)."""
    events = Event.objects.filter(
        session_id=session_id, sequence_number__gt=after_sequence
    ).order_by("sequence_number")
    return events[:limit] if limit is not None else events


def events_of_execution(execution_id: Any) -> QuerySet[Event]:
    """The turn's events: a root's include its delegated children's (a child
    waiting for approval stores the request the answer must show)."""
    return Event.objects.filter(
        Q(execution_id=execution_id) | Q(execution__root_id=execution_id)
    ).order_by("sequence_number")


def attachments_for_turn(
    *, user_id: Any, session_id: Any, ids: Sequence[Any]
) -> dict[str, Artifact]:
    """The user's artifacts of the session among `ids`, by id; ids that are
    not ids, or name someone else's or another session's artifact, are absent."""
    return {
        str(artifact.pk): artifact
        for artifact in Artifact.objects.filter(
            pk__in=[i for i in ids if is_uuid(i)],
            owner_id=user_id,
            session_id=session_id,
        )
    }


def executions_of(user: User) -> QuerySet[AgentExecution]:
    return AgentExecution.objects.filter(user=user)


def artifacts_of(user: User) -> QuerySet[Artifact]:
    return Artifact.objects.filter(owner=user)
