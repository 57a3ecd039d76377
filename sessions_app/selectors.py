"""Reads of sessions, events, executions and artifacts, scoped to their user.

Public surface:
    sessions_of(user)
    events_after(session_id, after_sequence, limit)   stored events in sequence order
    executions_of(user)
    artifacts_of(user)
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from accounts.models import User
from sessions_app.models import AgentExecution, Artifact, Event, Session


def sessions_of(user: User) -> QuerySet[Session]:
    return Session.objects.filter(user=user)


def events_after(
    session_id: Any, after_sequence: int = 0, limit: int | None = None
) -> QuerySet[Event]:
    """Events of the session with a sequence number above `after_sequence`,
    oldest first (served by the unique (session, sequence_number) index)."""
    events = Event.objects.filter(
        session_id=session_id, sequence_number__gt=after_sequence
    ).order_by("sequence_number")
    return events[:limit] if limit is not None else events


def executions_of(user: User) -> QuerySet[AgentExecution]:
    return AgentExecution.objects.filter(user=user)


def artifacts_of(user: User) -> QuerySet[Artifact]:
    return Artifact.objects.filter(owner=user)
